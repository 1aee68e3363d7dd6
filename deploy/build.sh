#!/usr/bin/env bash
# Build llm-gateway without Docker: the project wheel, a wheelhouse (the project and every dependency as
# wheels) and a standalone run directory. This script is the single source of the build steps: the
# Dockerfile runs `build.sh wheelhouse` in its builder stage and `build.sh install` in its runtime stage.
#
# Usage: deploy/build.sh [all|wheel|wheelhouse|install VENV_DIR|rundir|binary|image|-h]
#   all         (default) wheelhouse, then rundir
#   wheel       build dist/llm_gateway-<version>-py3-none-any.whl from the repository (pip, no extra tools)
#   wheelhouse  wheel, then every runtime dependency as a wheel into the wheelhouse
#   install DIR create a virtualenv at DIR and install llm-gateway into it from the wheelhouse only
#               (--no-index: nothing is downloaded at this step, no compiler is needed)
#   rundir      install into OUT/llm-gateway-run/venv, copy gateway.yaml and write OUT/llm-gateway-run/run
#   binary      OUT/llm-gateway: one executable file (PyInstaller, deploy/frozen/llm-gateway.spec) that needs
#               no Python; built in OUT/freeze-venv from the wheelhouse plus PyInstaller
#   image [ARGS] the container image: DOCKER_BUILDKIT=1 docker build -f deploy/Dockerfile [ARGS] .
#
# Environment:
#   LLM_GATEWAY_BUILD_OUT      output directory (default: <repo>/dist)
#   LLM_GATEWAY_WHEELHOUSE     wheelhouse directory (default: $LLM_GATEWAY_BUILD_OUT/wheels)
#   LLM_GATEWAY_VENV_WITHOUT_PIP=1  leave pip/setuptools out of the virtualenv (the image does this)
#   PYTHON                     interpreter to build with (default: python3, needs >= 3.11)
#   DOCKER                     container CLI for `image` (default: docker)
#   LLM_GATEWAY_IMAGE          tag for `image` (default: llm-gateway:local)
#   LLM_GATEWAY_IMAGE_BASE     base image for `image` (build arg PYTHON_IMAGE; default: the Dockerfile's)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, HTTPS_PROXY, ...  honoured by pip as usual
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
# An absolute path, resolved once: with a target venv first on PATH (as in the image), a bare
# `python3` would start up as that pip-less venv.
python_bin="$(command -v "${PYTHON:-python3}" || printf '%s' "${PYTHON:-python3}")"
out_dir="${LLM_GATEWAY_BUILD_OUT:-${repo_root}/dist}"
wheelhouse="${LLM_GATEWAY_WHEELHOUSE:-${out_dir}/wheels}"

log() { printf '[build] %s\n' "$*" >&2; }
die() { printf '[build] error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

check_python() {
  command -v "${python_bin}" >/dev/null 2>&1 || die "no Python interpreter '${python_bin}' (set PYTHON=...)"
  "${python_bin}" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "llm-gateway needs Python >= 3.11; '${python_bin}' is $("${python_bin}" -V 2>&1)"
}

# Prints the path of the single project wheel in directory $1.
find_project_wheel() {
  local dir="$1" found=()
  shopt -s nullglob
  found=("${dir}"/llm_gateway-*.whl)
  shopt -u nullglob
  [ "${#found[@]}" -eq 1 ] || die "expected exactly one llm_gateway-*.whl in ${dir}, found ${#found[@]}"
  printf '%s\n' "${found[0]}"
}

build_wheel() {
  check_python
  mkdir -p "${out_dir}"
  rm -f "${out_dir}"/llm_gateway-*.whl
  log "building the project wheel into ${out_dir}"
  "${python_bin}" -m pip wheel --no-deps --wheel-dir "${out_dir}" "${repo_root}"
  log "built $(find_project_wheel "${out_dir}")"
}

build_wheelhouse() {
  build_wheel
  local wheel
  wheel="$(find_project_wheel "${out_dir}")"
  mkdir -p "${wheelhouse}"
  rm -f "${wheelhouse}"/llm_gateway-*.whl
  log "collecting the project and its dependencies as wheels into ${wheelhouse}"
  "${python_bin}" -m pip wheel --wheel-dir "${wheelhouse}" "${wheel}"
  find_project_wheel "${wheelhouse}" >/dev/null
}

# install VENV_DIR: a fresh virtualenv with llm-gateway from the wheelhouse only.
install_venv() {
  local venv="${1:-}"
  [ -n "${venv}" ] || die "install needs a target directory: build.sh install VENV_DIR"
  check_python
  [ -d "${wheelhouse}" ] || die "no wheelhouse at ${wheelhouse}; run 'build.sh wheelhouse' first"
  local wheel
  wheel="$(find_project_wheel "${wheelhouse}")"
  if [ -e "${venv}" ]; then
    # Only ever replace a previous virtualenv, never an arbitrary directory handed in by mistake.
    [ -f "${venv}/pyvenv.cfg" ] || [ -z "$(ls -A "${venv}")" ] \
      || die "${venv} exists and is not a virtualenv; refusing to replace it"
    rm -rf "${venv}"
  fi
  if [ "${LLM_GATEWAY_VENV_WITHOUT_PIP:-0}" = "1" ]; then
    log "creating ${venv} (without pip) and installing from ${wheelhouse}"
    "${python_bin}" -m venv --without-pip "${venv}"
    "${python_bin}" -m pip --python "${venv}/bin/python" install --no-index --no-cache-dir \
      --find-links "${wheelhouse}" "${wheel}"
  else
    log "creating ${venv} and installing from ${wheelhouse}"
    "${python_bin}" -m venv "${venv}"
    "${venv}/bin/python" -m pip install --no-index --no-cache-dir --find-links "${wheelhouse}" "${wheel}"
  fi
  "${venv}/bin/python" -c 'import importlib.metadata as m; print("llm-gateway", m.version("llm-gateway"))' >&2
}

write_run_script() {
  local run_dir="$1"
  cat >"${run_dir}/run" <<'EOF'
#!/usr/bin/env bash
# Start llm-gateway from this directory: ./run [serve|check-config ...] (default: serve).
# Secrets (OPENAI_API_KEY, GATEWAY_KEY_A, ...) come from the environment; an ./env file is loaded if present.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -f "${here}/env" ]; then set -a; . "${here}/env"; set +a; fi
export LLM_GATEWAY_CONFIG="${LLM_GATEWAY_CONFIG:-${here}/gateway.yaml}"
# `python -m gateway` rather than the console script: the entry-point shebang holds an absolute path,
# the module form keeps the directory movable on the same machine.
exec "${here}/venv/bin/python" -m gateway "${@:-serve}"
EOF
  chmod 0755 "${run_dir}/run"
}

build_rundir() {
  local run_dir="${out_dir}/llm-gateway-run"
  install_venv "${run_dir}/venv"
  if [ -f "${repo_root}/gateway.yaml" ]; then
    cp "${repo_root}/gateway.yaml" "${run_dir}/gateway.yaml"
  else
    log "warning: ${repo_root}/gateway.yaml not found; put a config at ${run_dir}/gateway.yaml"
  fi
  write_run_script "${run_dir}"
  log "run directory ready: ${run_dir}/run serve --port 8080"
}

# binary: one file that runs without Python, from a throw-away venv of the wheelhouse + PyInstaller.
build_binary() {
  build_wheelhouse
  local venv="${out_dir}/freeze-venv"
  LLM_GATEWAY_VENV_WITHOUT_PIP=0 install_venv "${venv}"
  log "installing PyInstaller into ${venv}"
  "${venv}/bin/python" -m pip install --quiet "pyinstaller>=6.10,<7"
  rm -f "${out_dir}/llm-gateway"
  "${venv}/bin/python" -m PyInstaller --noconfirm --clean --log-level WARN --distpath "${out_dir}" \
    --workpath "${out_dir}/pyinstaller-work" "${script_dir}/frozen/llm-gateway.spec"
  [ -x "${out_dir}/llm-gateway" ] || die "PyInstaller did not produce ${out_dir}/llm-gateway"
  "${out_dir}/llm-gateway" --version >&2
  log "executable ready: ${out_dir}/llm-gateway ($(du -h "${out_dir}/llm-gateway" | cut -f1))"
}

# image [DOCKER_BUILD_ARGS...]: extra arguments go to `docker build` (e.g. --network=host).
build_image() {
  local docker="${DOCKER:-docker}" tag="${LLM_GATEWAY_IMAGE:-llm-gateway:local}" base_args=()
  command -v "${docker}" >/dev/null 2>&1 || die "no container CLI '${docker}' (set DOCKER=...)"
  [ -z "${LLM_GATEWAY_IMAGE_BASE:-}" ] || base_args=(--build-arg "PYTHON_IMAGE=${LLM_GATEWAY_IMAGE_BASE}")
  log "building image ${tag} with ${docker}"
  DOCKER_BUILDKIT=1 "${docker}" build -f "${script_dir}/Dockerfile" ${base_args[@]+"${base_args[@]}"} \
    -t "${tag}" "$@" "${repo_root}"
}

main() {
  local cmd="${1:-all}"
  case "${cmd}" in
    all) build_wheelhouse; build_rundir ;;
    wheel) build_wheel ;;
    wheelhouse) build_wheelhouse ;;
    install) shift; install_venv "${1:-}" ;;
    rundir) build_rundir ;;
    binary) build_binary ;;
    image) shift; build_image "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; die "unknown command: ${cmd}" ;;
  esac
}

main "$@"
