#!/usr/bin/env bash
# Text in images: what recognition costs per photo, and whether it slows embedding. Run on a quiet
# machine from the source folder after a release build:
#   tools/bench_text.sh [BUILD_DIR] [MODEL]     (defaults: build/release, /tmp/models/vit-b-32)
set -euo pipefail
B=${1:-build/release}
M=${2:-/tmp/models/vit-b-32}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
P=$work/photos
"$B/make_photo_folder" --out "$P" --n 30 --seed 4 --words "ESPRESSO BAR" --words "GATE 12 CLOSED" \
  --words "INVOICE 4471" --words "PLATFORM 9" --words "OPEN 24 HOURS" > /dev/null
echo "30 camera-size photos (640x480 to 4032x3024), 5 of them with a sign; $(du -sh "$P" | cut -f1)"
# Embedding with and without the text stage, alternated (index reads text after embedding).
for round in 1 2; do
  for mode in --no-ocr --ocr-lang=eng; do
    rm -rf "$work/db"
    echo "$mode: $("$B/imgsearch" index --db "$work/db" --model "$M" "$mode" "$P" 2>/dev/null |
      grep -E 'files scanned|text read' | tr '\n' ' ')"
  done
done
# Recognition alone, one reader: the text of an embedded collection.
rm -rf "$work/db"
"$B/imgsearch" index --db "$work/db" --model "$M" --no-ocr "$P" > /dev/null 2>&1
echo "one reader: $("$B/imgsearch" index --db "$work/db" --model "$M" --ocr-threads 1 "$P" 2>/dev/null | grep 'text read')"
for w in "ESPRESSO" "GATE 12" "INVOICE 4471" "PLATFORM" "24 HOURS"; do
  echo "--contains \"$w\": $("$B/imgsearch" search --db "$work/db" --contains "$w" --json | wc -l) hit(s)"
done
