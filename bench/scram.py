"""SCRAM-SHA-512 credential entries (RFC 5802) for the sidecar's `sasl.credentials` file, for the
bench scripts that start a sidecar with SASL: the stored and server keys, never the password."""
import base64
import hashlib
import hmac


def scram_entry(user, password, salt, iterations=4096):
    """One `users:` entry of a credentials file, as a YAML line."""
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha512").digest()
    stored_key = hashlib.sha512(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha512").digest()
    b64 = lambda b: base64.b64encode(b).decode()
    return (f'  - {{user: {user}, mechanism: SCRAM-SHA-512, salt: "{b64(salt)}", iterations: {iterations}, '
            f'stored_key: "{b64(stored_key)}", server_key: "{b64(server_key)}"}}\n')
