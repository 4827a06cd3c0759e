systemd-sysusers oz-agent-worker.conf >/dev/null 2>&1 || \
    getent passwd oz-agent-worker >/dev/null || \
    useradd --system --user-group --home-dir /var/lib/oz-agent-worker --no-create-home \
        --shell /sbin/nologin --comment "Oz agent worker" oz-agent-worker
systemd-tmpfiles --create oz-agent-worker.conf >/dev/null 2>&1 || \
    install -d -m 0700 -o oz-agent-worker -g oz-agent-worker /var/lib/oz-agent-worker
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
