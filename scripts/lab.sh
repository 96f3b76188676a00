#!/usr/bin/env bash
# `make lab`: JupyterLab on notebooks/ in the project environment (.venv), for a person at
# this machine. Why a script and not a bare `jupyter lab`: the trust settings must not depend
# on what a user's own Jupyter configuration says.
#   - it listens on 127.0.0.1 only (never on a network interface);
#   - it always asks for a token: $JUPYTER_TOKEN if set, else a fresh random one. The token
#     travels in a private config file (mode 600, deleted on exit), not on the command line,
#     where `ps` would show it to other users of the machine; that file is loaded after the
#     user's jupyter_config.py, so no user setting can switch the token off;
#   - the URL to open (with the token) is printed here, because Jupyter itself prints a token
#     it did not generate as "...".
# LAB_PORT: the port (default 8888, or the next free one up to 8897 when it is taken).
# The notebooks' kernel is "fusnet" (`make venv` registers it inside .venv), so a notebook
# opens on this environment's Python without choosing a kernel.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/jupyter ]; then
    echo "lab.sh: no .venv/bin/jupyter: run 'make lab' (it builds .venv first)" >&2
    exit 1
fi

port="${LAB_PORT:-}"
if [ -z "$port" ]; then
    port="$(.venv/bin/python - <<'EOF'
import socket

for port in range(8888, 8898):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
else:
    raise SystemExit("lab.sh: ports 8888-8897 are all taken: choose one with LAB_PORT=")
EOF
)"
fi

token="${JUPYTER_TOKEN:-$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(24))')}"
private="$(mktemp -d "${TMPDIR:-/tmp}/fusnet-lab.XXXXXX")"  # mode 700
trap 'rm -rf "$private"' EXIT
umask 077
LAB_TOKEN="$token" .venv/bin/python -c \
    'import os; print("c.IdentityProvider.token = " + repr(os.environ["LAB_TOKEN"]))' \
    > "$private/jupyter_lab_config.py"

url="http://127.0.0.1:${port}/lab?token=${token}"
cat <<EOF
JupyterLab on notebooks/ (kernel "Python 3 (fusnet)", this .venv), 127.0.0.1 only.
Open this URL in a browser on this machine (Ctrl-C twice here stops the server):

    ${url}

EOF

# Jupyter refuses to run as root without --allow-root: containers and CI run as root.
as_root=()
if [ "$(id -u)" = 0 ]; then as_root=(--allow-root); fi

# Not exec: the EXIT trap deletes the token file when the server stops.
.venv/bin/jupyter lab --no-browser "${as_root[@]}" \
    --config="$private/jupyter_lab_config.py" \
    --ServerApp.ip=127.0.0.1 --ServerApp.port="$port" --ServerApp.port_retries=0 \
    --ServerApp.root_dir=notebooks
