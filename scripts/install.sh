#!/usr/bin/env bash
# Installs everything jaxdis needs on a fresh Debian/Ubuntu machine: eSpeak NG (for the
# built-in corpus) and a virtual environment in .venv with jaxdis, its tests' and its
# PyTorch references' dependencies. Safe to rerun.
#   bash scripts/install.sh            # core + dev + torch + pretrained extras
#   JAXDIS_EXTRAS=dev bash scripts/install.sh   # lighter: no PyTorch
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${JAXDIS_EXTRAS:-dev,torch,pretrained}"

if ! command -v espeak-ng >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [[ ",$EXTRAS," == *",torch,"* ]]; then
  # The CPU wheel first, pinned: an unpinned torch would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
if [[ ",$EXTRAS," == *",torch,"* ]]; then
  # speechbrain's ECAPA (parity test, benchmark) needs no torchaudio; its pinned torchaudio
  # does not load beside torch 2.13, so install it without dependencies.
  .venv/bin/python -m pip install -q --no-deps "speechbrain==1.1.2"
  .venv/bin/python -m pip install -q hyperpyyaml sentencepiece
fi
echo "jaxdis installed in .venv ($EXTRAS)"
