# $1 = 0: the last version is being removed (not an upgrade).
if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now oz-agent-worker.service >/dev/null 2>&1 || :
fi
