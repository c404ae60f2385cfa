#!/bin/sh
# Runs after the files are removed (deb: "remove", "purge", "upgrade" and
# the abort cases; rpm: $1 is 0 on erase, 1 on upgrade).
#
# The job store in /var/lib/secauto, the logs in /var/log/secauto and the
# secauto user are kept, even on purge: the job history is an audit trail,
# and files left behind must not end up owned by a recycled uid.
set -e

case "$1" in
remove | purge | 0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null || true
		systemctl reset-failed secauto.service >/dev/null 2>&1 || true
	fi
	;;
esac

if [ "$1" = purge ]; then
	for dir in /var/lib/secauto /var/log/secauto; do
		if [ -d "$dir" ]; then
			echo "secauto: $dir is kept; delete it by hand once it is no longer needed"
		fi
	done
fi
