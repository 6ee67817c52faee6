#!/bin/sh
echo "sleeping with marker $1"
while :; do sleep 1; done
