"""A Docker registry token server for the token-auth tests (the test's own oracle; the registry is real).

    token_server.py HOST PORT KEY_PEM CERT_PEM ISSUER SERVICE USER PASSWORD [UPSTREAM]

GET /token?service=…&scope=…: with valid Basic credentials (USER:PASSWORD) a JWT (RS256, the signing
certificate in the `x5c` header, as docker/distribution's token auth verifies against its
`rootcertbundle`) granting exactly the requested scopes; without credentials an anonymous token
granting nothing; with wrong credentials 401. Every /token request is recorded: GET /_seen answers
the list of {path, authorization, scopes} as JSON.

With UPSTREAM (e.g. http://127.0.0.1:5000) every other path is forwarded there (method, path, the
Authorization and Accept headers; the answer's status, body and registry headers come back): the
token endpoint and the registry share one origin, as in Harbor or a registry behind one front.
"""
import base64
import http.client
import json
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

host, port, key_file, cert_file, issuer, service, user, password = sys.argv[1:9]
upstream = urllib.parse.urlparse(sys.argv[9]) if len(sys.argv) > 9 else None

with open(key_file, "rb") as f:
    key = serialization.load_pem_private_key(f.read(), password=None)
with open(cert_file, "rb") as f:
    cert_der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
x5c = [base64.b64encode(cert_der).decode()]

seen = []
seen_lock = threading.Lock()


def access_of(scope):
    """`repository:lablup/python:pull` -> {type, name, actions} (names may contain ':' only in the type)."""
    typ, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return {"type": typ, "name": name, "actions": [a for a in actions.split(",") if a]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path == "/_seen":
            with seen_lock:
                return self.answer(200, list(seen), [("Content-Type", "application/json")])
        if url.path == "/token":
            return self.token(url)
        return self.forward()

    def do_HEAD(self):
        return self.forward()

    def token(self, url):
        q = urllib.parse.parse_qs(url.query)
        scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
        authorization = self.headers.get("Authorization")
        with seen_lock:
            seen.append({"path": self.path, "authorization": authorization, "scopes": scopes})
        if q.get("service", [None])[0] != service:
            return self.answer(400, {"error": "unknown service"})
        subject = ""
        access = []
        if authorization is not None:
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if authorization != expected:
                return self.answer(401, {"error": "bad credentials"}, [("WWW-Authenticate", 'Basic realm="token"')])
            subject = user
            access = [access_of(s) for s in scopes]
        now = int(time.time())
        claims = {"iss": issuer, "sub": subject, "aud": service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}
        token = jwt.encode(claims, key, algorithm="RS256", headers={"x5c": x5c})
        self.answer(200, {"token": token, "access_token": token, "expires_in": 300},
                    [("Content-Type", "application/json")])

    def forward(self):
        if upstream is None:
            return self.answer(404, {"error": "no such path"})
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
        conn.request(self.command, self.path, headers=headers)
        res = conn.getresponse()
        body = res.read()
        keep = ("content-type", "www-authenticate", "link", "docker-content-digest",
                "docker-distribution-api-version")
        self.answer(res.status, body, [(k, v) for k, v in res.getheaders() if k.lower() in keep])
        conn.close()


ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
