#!/usr/bin/env bash
# Reproduce the paper's figures and tables on the held-out CIFAR-10 validation split (5,000 images):
# runs every sweep in sweeps/ (resumable: finished points and trained models are reused), then writes the
# plots (PNG + SVG) and markdown tables into experiments/results/sweeps/<figure>/.
# Cost on 2 CPU cores: ~2.5 h (8 trainings of ~7-10 min each, ~200 evaluation points of ~20 s).
#   bash experiments/paper_figures.sh            # everything
#   bash experiments/paper_figures.sh fig7_tau   # one figure (a sweep file's name)
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results/sweeps
figures=("${@:-fig4_awgn fig4_rayleigh table1 fig6_bpp fig7_tau fig8_snr_train}")
for f in ${figures[@]}; do
  jsccflow sweep "sweeps/$f.yaml"
  case "$f" in
    fig4_awgn|fig4_rayleigh)
      jsccflow plot --force "$R/$f/results.csv" --x snr_db --y accuracy --out "$R/$f/accuracy"
      jsccflow plot --force "$R/$f/results.csv" --x snr_db --y psnr_db --out "$R/$f/psnr"
      jsccflow table --force "$R/$f/results.csv" --versus deepjscc -o "$R/$f/accuracy.md"
      jsccflow table --force "$R/$f/results.csv" --y psnr_db -o "$R/$f/psnr.md" ;;
    table1)
      jsccflow table --force "$R/$f/results.csv" --y accuracy --y f1_macro --y psnr_db --y ssim --versus deepjscc --digits 3 \
        -o "$R/$f/table1.md" ;;
    fig6_bpp)
      jsccflow plot --force "$R/$f/results.csv" --x bpp --y accuracy --by method --by train_seed --out "$R/$f/accuracy"
      { jsccflow table --force "$R/$f/results.csv" --cols bpp --where train_seed=0 --versus sdjscc_nogsw; echo
        jsccflow table --force "$R/$f/results.csv" --cols train_seed --where bpp=0.25 --versus sdjscc_nogsw; } \
        > "$R/$f/accuracy.md" ;;
    fig7_tau)
      jsccflow plot --force "$R/$f/results.csv" --x tau --y accuracy --out "$R/$f/accuracy"
      jsccflow table --force "$R/$f/results.csv" --rows tau --cols method --versus 1 -o "$R/$f/accuracy.md" ;;
    fig8_snr_train)
      jsccflow plot --force "$R/$f/results.csv" --x snr_db --y accuracy --by snr_train --out "$R/$f/accuracy"
      jsccflow table --force "$R/$f/results.csv" --rows snr_train -o "$R/$f/accuracy.md" ;;
  esac
done
