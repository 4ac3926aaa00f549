# Sourced by the project's scripts. `need COMMAND [PACKAGE]` installs
# PACKAGE (default: COMMAND) with apt-get when COMMAND is missing, as root
# or through sudo, so a fresh machine needs nothing typed first.
# `apt_install PACKAGE...` installs packages the same way.
apt_install() {
  local sudo=""
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no apt-get on this machine: install $*, then run this again" >&2
    return 1
  fi
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "installing $* needs root (or sudo)" >&2
      return 1
    fi
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

need() {
  local cmd=$1 pkg=${2:-$1}
  command -v "$cmd" >/dev/null 2>&1 && return 0
  echo "$cmd not found: installing the $pkg package with apt-get" >&2
  apt_install "$pkg" || return 1
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "$pkg is installed but $cmd is still not found" >&2
    return 1
  fi
}
