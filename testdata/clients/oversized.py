"""Sends a body of the given size with Python's requests (or urllib, with
"urllib") and prints the answer's status and body as JSON: how a Python
client sees a refused upload.
    python3 oversized.py requests|urllib URL BYTES"""
import json
import sys

lib, url, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = ('{"username":"' + "x" * size + '","password":"p"}').encode()
headers = {"Content-Type": "application/json"}
try:
    if lib == "requests":
        import requests
        r = requests.post(url, data=body, headers=headers, timeout=30)
        out = {"status": r.status_code, "type": r.headers.get("content-type"), "body": r.text}
    else:
        import urllib.error
        import urllib.request
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                out = {"status": r.status, "type": r.headers.get("content-type"), "body": r.read().decode()}
        except urllib.error.HTTPError as e:
            out = {"status": e.code, "type": e.headers.get("content-type"), "body": e.read().decode()}
except Exception as e:  # the client's own failure is the finding
    out = {"error": repr(e)}
print(json.dumps(out))
