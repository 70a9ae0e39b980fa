"""Drives an llm-service (or any OpenAI-compatible server) with the official `openai` SDK.

Usage: python3 openai_client.py BASE_URL   (BASE_URL without /v1)
Prints one JSON object with what the SDK parsed; exits non-zero on any error.
"""
import json
import sys

from openai import OpenAI


def main() -> None:
    client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0, timeout=20)
    completion = client.chat.completions.create(
        model="any-model",
        messages=[{"role": "user", "content": "What is a circuit breaker?"}],
        max_tokens=12,
        top_p=0.9,
    )
    text_chunks = []
    finish = None
    usage = None
    roles = []
    stream = client.chat.completions.create(
        model="any-model",
        messages=[{"role": "user", "content": "What is a circuit breaker?"}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.total_tokens
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                text_chunks.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    models = [m.id for m in client.models.list()]
    print(json.dumps({
        "model": completion.model,
        "content": completion.choices[0].message.content,
        "finish_reason": completion.choices[0].finish_reason,
        "total_tokens": completion.usage.total_tokens,
        "stream_text": "".join(text_chunks),
        "stream_roles": roles,
        "stream_finish_reason": finish,
        "stream_total_tokens": usage,
        "models": models,
    }))


if __name__ == "__main__":
    main()
