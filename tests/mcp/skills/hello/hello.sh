#!/bin/sh
# Benign: greet, show who we are inside the sandbox.
echo "hello from the sandbox: $*"
echo "uid inside: $(id -u)"
