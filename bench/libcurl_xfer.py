#!/usr/bin/env python3
"""libcurl_xfer.py - one FTP transfer with a current libcurl (pycurl), for extra.py.

usage (run by a python that has pycurl, e.g. the venv bench/run.sh makes):
  libcurl_xfer.py --user USER:PASS (-o PATH | -T PATH) [--max-time S] ftp://HOST:PORT/PATH

Prints what extra.py's `curl -w` prints: "size_download size_upload time_pretransfer
time_total" (bytes, seconds), then libcurl's version on a second line.

Why: curl 7.88 (Debian 12's) sometimes waits ~200 ms before it connects the data connection.
When the EPSV reply is already readable the instant after curl sent EPSV, curl reads it inside
its DO phase, sets up the data connection, and only starts connecting when a 200 ms timer
fires (`--trace-time` shows "Connecting to ... port N" followed 200 ms later by "Trying").
Servers that answer within microseconds hit it in most transfers, slower ones rarely. Later
libcurl releases connect at once, so this measures the kit's "total time" definition (login,
EPSV, transfer) with the client a user of a current curl has. Options match the curl command
line's where they overlap. Upload buffers are 2 MiB: with libcurl's 64 KiB default the
Python read callback, not the server, sets the pace.
"""
import argparse
import sys

import pycurl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--user", required=True)
    ap.add_argument("-o", dest="output")
    ap.add_argument("-T", dest="upload")
    ap.add_argument("--max-time", type=int, default=600)
    ap.add_argument("url")
    a = ap.parse_args()
    if bool(a.output) == bool(a.upload):
        ap.error("exactly one of -o and -T")
    c = pycurl.Curl()
    c.setopt(pycurl.URL, a.url)
    c.setopt(pycurl.USERPWD, a.user)
    c.setopt(pycurl.TIMEOUT, a.max_time)
    c.setopt(pycurl.BUFFERSIZE, 512 * 1024)
    with open(a.upload or a.output, "rb" if a.upload else "wb", buffering=0) as fh:
        if a.upload:
            c.setopt(pycurl.UPLOAD, 1)
            c.setopt(pycurl.UPLOAD_BUFFERSIZE, 2 * 1024 * 1024)
            c.setopt(pycurl.READDATA, fh)
        else:
            c.setopt(pycurl.WRITEDATA, fh)
        try:
            c.perform()
        except pycurl.error as e:
            print(f"libcurl: {e}", file=sys.stderr)
            return 1
    print(c.getinfo(pycurl.SIZE_DOWNLOAD_T), c.getinfo(pycurl.SIZE_UPLOAD_T),
          c.getinfo(pycurl.PRETRANSFER_TIME), c.getinfo(pycurl.TOTAL_TIME))
    print(pycurl.version.split()[1])
    c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
