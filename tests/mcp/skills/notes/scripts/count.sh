#!/bin/sh
printf 'first\nsecond\nthird\n' | wc -l
