# fetch URL FILE: download URL to FILE in the current folder unless FILE is already there (resumable;
# the file appears only once complete). Sourced by egs/<corpus>/local/data_download.sh.
fetch() {
  if [ ! -s "$2" ]; then
    echo "downloading $1"; wget --continue -O "$2.part" "$1" && mv "$2.part" "$2"
  fi
}
