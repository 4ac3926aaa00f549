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

# A Rust toolchain at least as new as Cargo.toml's `rust-version`: rustup's
# stable (minimal profile, into ~/.cargo) when cargo is missing, and a
# rustup toolchain updated when it is older. A C compiler too (zlib-ng and
# ring build C code).
need_rust() {
  # shellcheck disable=SC1091
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  need cc gcc
  if ! command -v cargo >/dev/null 2>&1; then
    need curl
    echo "cargo not found: installing Rust with rustup (stable, minimal profile) into ~/.cargo" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  local want have
  want=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
  have=$(rustc --version | awk '{print $2}')
  if [ -n "$want" ] && ! printf '%s\n%s\n' "$want" "$have" | sort -V -C; then
    if command -v rustup >/dev/null 2>&1; then
      echo "rustc $have is older than $want: updating the stable toolchain" >&2
      rustup update stable >&2
      have=$(rustc --version | awk '{print $2}')
      if ! printf '%s\n%s\n' "$want" "$have" | sort -V -C; then
        echo "rustc is still $have after 'rustup update stable' (a pinned or overridden toolchain?): this build needs $want" >&2
        return 1
      fi
    else
      echo "rustc $have is older than the $want this build needs (not a rustup toolchain: update it, or install rustup)" >&2
      return 1
    fi
  fi
}
