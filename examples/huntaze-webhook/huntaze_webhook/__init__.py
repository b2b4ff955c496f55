"""``post_webhook``: tell another system about a fan, from an automation.

    post_webhook url: "https://hooks.example.com/huntaze", label: "big spender {{ fan.name }}"

The payload is JSON: the label, the creator, the fan, the trigger's name and data, and
the time. The step's idempotency key travels in the ``Idempotency-Key`` header, so a
receiver that deduplicates on it sees a retried step once.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator
from pydantic_core import to_jsonable_python

from engine.plugin_api import Action, ActionContext, ActionError, ActionResult

__version__ = "0.1.0"
USER_AGENT = f"huntaze-webhook/{__version__}"
# A worker waits for the answer; a webhook slower than this should queue the work itself.
MAX_TIMEOUT = timedelta(seconds=30)


class PostWebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="Where to POST, http:// or https://.")
    label: str = Field(
        default="", max_length=200, description="Sent as `label`; may use {{ placeholders }}."
    )
    timeout: timedelta = Field(
        default=timedelta(seconds=10), description="How long to wait for an answer (≤ 30s)."
    )

    @field_validator("timeout")
    @classmethod
    def _bounded(cls, timeout: timedelta) -> timedelta:
        if not timedelta(0) < timeout <= MAX_TIMEOUT:
            raise ValueError("the timeout must be more than 0s and at most 30s")
        return timeout


class PostWebhook(Action):
    description = (
        "POST a JSON payload about the fan and the event to a URL, with the step's "
        "Idempotency-Key header; the label may use {{ placeholders }}."
    )
    Config = PostWebhookConfig

    def run(self, ctx: ActionContext, config: PostWebhookConfig) -> ActionResult:
        payload = {
            "label": ctx.render(config.label),
            "creator_id": ctx.creator_id,
            "fan": {"id": ctx.fan_id, **ctx.fan},
            "trigger": ctx.trigger,
            "data": ctx.trigger_data,
            "sent_at": ctx.now,
        }
        headers = {"Idempotency-Key": ctx.idempotency_key, "User-Agent": USER_AGENT}
        try:
            response = httpx.post(
                str(config.url),
                json=to_jsonable_python(payload),
                headers=headers,
                timeout=config.timeout.total_seconds(),
            )
        except httpx.TransportError as exc:  # unreachable, refused, timed out
            raise ActionError(f"cannot reach {config.url.host}: {exc!r}") from exc
        output = {"status_code": response.status_code}
        if not response.is_success:
            detail = f"{config.url.host} refused the webhook: HTTP {response.status_code}"
            return ActionResult(ok=False, detail=detail, output=output)
        return ActionResult(
            detail=f"{config.url.host} answered {response.status_code}", output=output
        )
