"""Messages and tags: the actions every creator uses.

``wait`` is not here: it is a statement of the language, because only the engine can
park an execution and resume it days later (see docs/plugins.md).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.plugin_api import Action, ActionContext, ActionResult

# Platforms cap direct messages well below this; a longer text is surely a mistake.
MAX_MESSAGE_LENGTH = 5000


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SendMessage(Action):
    description = (
        "Send the fan a direct message. The text may use {{ placeholders }} naming the "
        "trigger's fields, such as {{ fan.name }} or {{ event.amount }}."
    )
    sends_message = True  # the policy counts it in max_messages_per_fan_per_day

    class Config(_Arguments):
        text: str = Field(min_length=1, max_length=MAX_MESSAGE_LENGTH)

    def run(self, ctx: ActionContext, config: Config) -> ActionResult:
        text = ctx.render(config.text)
        message_id = ctx.services.outbox.send(
            creator_id=ctx.creator_id,
            fan_id=ctx.fan_id,
            text=text,
            idempotency_key=ctx.idempotency_key,
        )
        return ActionResult(
            detail="message queued", output={"message_id": message_id, "text": text}
        )


class _TagArguments(_Arguments):
    tag: str = Field(min_length=1, max_length=64)

    @field_validator("tag")
    @classmethod
    def _no_outer_spaces(cls, tag: str) -> str:
        # "vip " and "vip" would be two tags that look the same in every list.
        if tag != tag.strip():
            raise ValueError("a tag cannot start or end with a space")
        return tag


class AddTag(Action):
    description = 'Add a tag to the fan (tags are case-sensitive labels, such as "vip").'
    side_effects = False
    Config = _TagArguments

    def run(self, ctx: ActionContext, config: _TagArguments) -> ActionResult:
        added = ctx.services.fans.add_tag(ctx.creator_id, ctx.fan_id, config.tag)
        detail = f"tagged {config.tag!r}" if added else f"already tagged {config.tag!r}"
        return ActionResult(detail=detail, output={"changed": added})


class RemoveTag(Action):
    description = "Remove a tag from the fan; nothing happens if the fan does not have it."
    side_effects = False
    Config = _TagArguments

    def run(self, ctx: ActionContext, config: _TagArguments) -> ActionResult:
        removed = ctx.services.fans.remove_tag(ctx.creator_id, ctx.fan_id, config.tag)
        detail = f"untagged {config.tag!r}" if removed else f"was not tagged {config.tag!r}"
        return ActionResult(detail=detail, output={"changed": removed})
