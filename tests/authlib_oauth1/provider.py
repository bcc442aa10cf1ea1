#!/usr/bin/env python3
"""An OAuth 1.0a provider built on Authlib's server classes, on loopback.

Started by tests/oauth1_authlib.rs: `provider.py PUBLIC_KEY_PEM_FILE`. It
listens on 127.0.0.1, on a free port, and prints `ready http://127.0.0.1:PORT`
once it accepts connections. Nothing here verifies a signature by hand: the
generic `authlib.oauth1.AuthorizationServer` and `ResourceProtector` do it,
with Authlib's own signature code. The storage is a dict.

Routes:
  POST /initiate     temporary credentials (RFC 5849 section 2.1)
  GET  /authorize    ?oauth_token=...&user=NAME grants the temporary
                     credential, as a user's browser would after approving
                     (no user: denied); answers 302 to the callback
  POST /token        token credentials (section 2.3)
  *    /resource     a protected resource: 200 "hello NAME via CLIENT" for
                     a request signed with token credentials, else Authlib's
                     error (401/400 and a form body)

Clients: `hmac-client` (secret below, HMAC-SHA1) and `rsa-client` (RSA-SHA1,
the public key given on the command line).
"""

import os
import secrets
import sys
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

# Plain http on loopback: Authlib refuses it unless told.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

from authlib.oauth1 import (  # noqa: E402
    AuthorizationServer,
    ClientMixin,
    OAuth1Request,
    ResourceProtector,
    TemporaryCredential,
)
from authlib.oauth1.errors import OAuth1Error  # noqa: E402

HMAC_SECRET = "authlib c0nsumer&secret~"


class Client(ClientMixin):
    def __init__(self, client_id, secret, public_key):
        self.client_id = client_id
        self.secret = secret
        self.public_key = public_key

    def get_default_redirect_uri(self):
        return "http://127.0.0.1/oob"

    def get_client_secret(self):
        return self.secret

    def get_rsa_public_key(self):
        return self.public_key


class Token(dict):
    def get_oauth_token(self):
        return self["oauth_token"]

    def get_oauth_token_secret(self):
        return self["oauth_token_secret"]


class Store:
    def __init__(self, public_key):
        self.clients = {
            "hmac-client": Client("hmac-client", HMAC_SECRET, None),
            "rsa-client": Client("rsa-client", "", public_key),
        }
        self.nonces = set()
        self.temporary = {}
        self.tokens = {}

    def exists_nonce(self, nonce, request):
        key = (nonce, request.timestamp, request.client_id, request.token)
        if key in self.nonces:
            return True
        self.nonces.add(key)
        return False


class Server(AuthorizationServer):
    SUPPORTED_SIGNATURE_METHODS = ["HMAC-SHA1", "RSA-SHA1"]

    def __init__(self, store):
        self.store = store

    def create_oauth1_request(self, request):
        return request

    def handle_response(self, status_code, payload, headers):
        if isinstance(payload, (list, tuple, dict)):
            payload = urlencode(payload)
        return status_code, payload, headers

    def get_client_by_id(self, client_id):
        return self.store.clients.get(client_id)

    def exists_nonce(self, nonce, request):
        return self.store.exists_nonce(nonce, request)

    def create_temporary_credential(self, request):
        credential = TemporaryCredential(
            oauth_token=secrets.token_urlsafe(12),
            oauth_token_secret=secrets.token_urlsafe(18),
            client_id=request.client_id,
            oauth_callback=request.redirect_uri,
        )
        self.store.temporary[credential["oauth_token"]] = credential
        return credential

    def get_temporary_credential(self, request):
        return self.store.temporary.get(request.token)

    def delete_temporary_credential(self, request):
        self.store.temporary.pop(request.token, None)

    def create_authorization_verifier(self, request):
        verifier = secrets.token_urlsafe(9)
        request.credential["user_id"] = request.user
        request.credential["oauth_verifier"] = verifier
        return verifier

    def create_token_credential(self, request):
        token = Token(
            oauth_token=secrets.token_urlsafe(12),
            oauth_token_secret=secrets.token_urlsafe(18),
            client_id=request.credential.get_client_id(),
            user_id=request.credential.get_user_id(),
        )
        self.store.tokens[token["oauth_token"]] = token
        return token


class Resource(ResourceProtector):
    SUPPORTED_SIGNATURE_METHODS = ["HMAC-SHA1", "RSA-SHA1"]

    def __init__(self, store):
        self.store = store

    def get_client_by_id(self, client_id):
        return self.store.clients.get(client_id)

    def exists_nonce(self, nonce, request):
        return self.store.exists_nonce(nonce, request)

    def get_token_credential(self, request):
        token = self.store.tokens.get(request.token)
        if token and token["client_id"] == request.client_id:
            return token
        return None


def make_app(store):
    server = Server(store)
    resource = Resource(store)

    def app(environ, start_response):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        uri = "http://%s%s%s" % (environ["HTTP_HOST"], path, "?" + query if query else "")
        headers = {}
        if environ.get("HTTP_AUTHORIZATION"):
            headers["Authorization"] = environ["HTTP_AUTHORIZATION"]
        content_type = environ.get("CONTENT_TYPE", "")
        if content_type:
            headers["Content-Type"] = content_type
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        body = raw.decode("utf-8") if raw else None
        if body is not None and not content_type.startswith("application/x-www-form-urlencoded"):
            body = None
        try:
            request = OAuth1Request(method, uri, body, headers)
        except (OAuth1Error, ValueError) as error:
            return respond(start_response, 400, "error=%s" % type(error).__name__, [])

        if path == "/initiate":
            status, payload, out = server.create_temporary_credentials_response(request)
        elif path == "/token":
            status, payload, out = server.create_token_response(request)
        elif path == "/authorize":
            params = dict(request.query_params)
            try:
                status, payload, out = server.create_authorization_response(
                    request, grant_user=params.get("user"))
            except OAuth1Error as error:
                status, payload, out = server.handle_error_response(error)
        elif path == "/resource":
            try:
                checked = resource.validate_request(method, uri, body, headers)
                user = checked.credential["user_id"]
                status, payload, out = 200, "hello %s via %s" % (user, checked.client_id), []
            except OAuth1Error as error:
                status, payload = error.status_code, urlencode(error.get_body())
                out = error.get_headers()
        else:
            status, payload, out = 404, "not found", []
        return respond(start_response, status, payload, out)

    return app


REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 405: "Method Not Allowed"}


def respond(start_response, status, payload, headers):
    body = (payload or "").encode("utf-8")
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    headers.append(("Content-Length", str(len(body))))
    start_response("%d %s" % (status, REASONS.get(status, "Status")), headers)
    return [body]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main():
    with open(sys.argv[1]) as f:
        public_key = f.read()
    httpd = make_server("127.0.0.1", 0, make_app(Store(public_key)),
                        server_class=WSGIServer, handler_class=QuietHandler)
    print("ready http://127.0.0.1:%d" % httpd.server_port, flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
