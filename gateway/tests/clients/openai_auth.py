"""The official `openai` SDK against a gateway with API keys and a rate limit.

Usage: python3 openai_auth.py BASE_URL GOOD_KEY BAD_KEY LIMITED_KEY   (BASE_URL without /v1)
GOOD_KEY may call; BAD_KEY is unknown; LIMITED_KEY's tier allows a burst of 2.
Prints one JSON object with what the SDK saw; exits non-zero on an unexpected error.
"""
import json
import sys

import openai
from openai import OpenAI

MESSAGES = [{"role": "user", "content": "What is a rate limit?"}]


def client(base_url: str, key: str) -> OpenAI:
    return OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=20)


def main() -> None:
    base_url, good, bad, limited = sys.argv[1:5]
    raw = client(base_url, good).chat.completions.with_raw_response.create(
        model="any-model", messages=MESSAGES, max_tokens=8
    )
    completion = raw.parse()
    seen = {
        "model": completion.model,
        "ratelimit_limit": raw.headers.get("x-ratelimit-limit"),
        "ratelimit_remaining": raw.headers.get("x-ratelimit-remaining"),
    }
    try:
        client(base_url, bad).chat.completions.create(
            model="any-model", messages=MESSAGES, max_tokens=8
        )
        seen["bad_key"] = "accepted"
    except openai.AuthenticationError as error:
        seen["bad_key"] = {"status": error.status_code, "code": error.code, "type": error.type}
    statuses = []
    for _ in range(4):
        try:
            client(base_url, limited).chat.completions.create(
                model="any-model", messages=MESSAGES, max_tokens=8
            )
            statuses.append(200)
        except openai.RateLimitError as error:
            statuses.append(error.status_code)
            seen["limited"] = {
                "code": error.code,
                "retry_after": error.response.headers.get("retry-after"),
            }
    seen["limited_statuses"] = statuses
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
