# Sourced by the ensure_* scripts: install Debian packages with apt-get, as root or through
# `sudo -n`. `apt_install LABEL PACKAGE...` returns non-zero, saying why, when it cannot.
apt_install() {
    local label="$1"
    shift
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$label: $* missing and apt-get is not available; install it by hand" >&2
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "$label: installing $* needs root (or sudo)" >&2; return 1; }
        sudo="sudo -n"
    fi
    echo "$label: installing $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
