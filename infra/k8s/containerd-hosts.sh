#!/bin/sh
# Points the node's containerd at the local Damselfly agent, after Dragonfly's
# containerRuntime.containerd.injectConfigPath: one hosts.toml per registry under CERTS_DIR
# (containerd's config_path, usually /etc/containerd/certs.d), written by `damselfly config
# containerd`. What was there before is kept aside and put back by `restore`.
#
#   containerd-hosts.sh inject    # init container: back up, then write
#   containerd-hosts.sh restore   # preStop / uninstall: put the originals back
#
# Environment: CERTS_DIR, MIRROR (the agent's mirror URL), REGISTRIES (space-separated upstream
# URLs), DAMSELFLY (how to run the CLI; default: node /app/dist/control/cli.js).
set -eu

CERTS_DIR=${CERTS_DIR:-/etc/containerd/certs.d}
MIRROR=${MIRROR:-http://127.0.0.1:4001}
REGISTRIES=${REGISTRIES:-https://index.docker.io}
DAMSELFLY=${DAMSELFLY:-node /app/dist/control/cli.js}
BACKUP=hosts.toml.damselfly-orig
CREATED=.damselfly-created

inject() {
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  args=""
  for r in $REGISTRIES; do args="$args --registry $r"; done
  # shellcheck disable=SC2086 # word splitting of the command and the flags is intended
  $DAMSELFLY config containerd --mirror "$MIRROR" $args --write "$stage" >/dev/null
  for dir in "$stage"/*/; do
    host=$(basename "$dir")
    target="$CERTS_DIR/$host"
    mkdir -p "$target"
    # Back up once: a restarted pod must not take its own file for the original.
    if [ ! -e "$target/$BACKUP" ] && [ ! -e "$target/$CREATED" ]; then
      if [ -e "$target/hosts.toml" ]; then cp -p "$target/hosts.toml" "$target/$BACKUP"; else : >"$target/$CREATED"; fi
    fi
    cp "$dir/hosts.toml" "$target/hosts.toml.tmp"
    mv "$target/hosts.toml.tmp" "$target/hosts.toml"
    echo "containerd-hosts: wrote $target/hosts.toml"
  done
}

restore() {
  [ -d "$CERTS_DIR" ] || return 0
  for target in "$CERTS_DIR"/*/; do
    target=${target%/}
    if [ -e "$target/$BACKUP" ]; then
      mv "$target/$BACKUP" "$target/hosts.toml"
      echo "containerd-hosts: restored $target/hosts.toml"
    elif [ -e "$target/$CREATED" ]; then
      rm -f "$target/hosts.toml" "$target/$CREATED"
      rmdir "$target" 2>/dev/null || true
      echo "containerd-hosts: removed $target/hosts.toml"
    fi
  done
}

case "${1:-}" in
  inject) inject ;;
  restore) restore ;;
  *) echo "usage: $0 inject|restore" >&2; exit 2 ;;
esac
