#!/usr/bin/env bash
# local/data_download.sh <db_root>: Fashion-MNIST (Zalando Research, MIT licence) IDX files (stage -1; needs
# internet; never run by the tests): the MNIST recipe's downloader pointed at the Fashion-MNIST mirror.
IDX_BASE_URL="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com" \
  exec "$(cd "$(dirname "$0")/../../mnist/local" && pwd)/data_download.sh" "$@"
