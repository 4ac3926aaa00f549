#!/bin/sh
# Healthy once init.sh has made the bucket.
exec test -f /var/lib/garage/.origin-pull-ready
