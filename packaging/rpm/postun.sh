# %postun (after the files are removed; $1 = 0 on erase, 1 on upgrade).
# The `xray` user and /var/log/xray are kept, as packages usually do.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
