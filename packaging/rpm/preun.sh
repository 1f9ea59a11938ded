# %preun (before the files are removed; $1 = 0 on erase, 1 on upgrade).
# On erase: stop and disable the service. On upgrade, %posttrans restarts it.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now xray.service >/dev/null 2>&1 || :
fi
exit 0
