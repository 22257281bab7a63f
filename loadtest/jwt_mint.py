"""Access tokens as `vote` issues them (HS256; sub, iat, exp, iss), minted without the API so a
load test needs neither registrations nor Argon2 time. Standard library only.

    python3 loadtest/jwt_mint.py --first 1001 --count 16 > tokens.txt
"""
import argparse
import base64
import hashlib
import hmac
import json
import time

DEFAULT_SECRET = "dev-secret-change-me"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(user_id: int, secret: str = DEFAULT_SECRET, issuer: str = "vote", lifetime: int = 86400) -> str:
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    # `sub` is a string, as the server writes it (jwt_add_grant) and reads it (jwt_get_grant).
    claims = {"sub": str(user_id), "iat": now, "exp": now + lifetime, "iss": issuer}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = _b64(hmac.new(secret.encode(), signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--issuer", default="vote")
    args = parser.parse_args()
    for user_id in range(args.first, args.first + args.count):
        print(mint(user_id, args.secret, args.issuer))


if __name__ == "__main__":
    main()
