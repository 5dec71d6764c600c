"""The original content filter, kept as the yardstick the pipeline is measured against.

It refused a prompt when any blocklisted word appeared anywhere in the lowercased prompt,
as a substring, and warned on a few words. So "begun" was refused for "gun", "Scunthorpe"
passed only because no listed word hides in it, and "k1ll" or "g u n" went through. The
word lists are its categories' words (violence, gore, explicit/nsfw, weapons), with a small
hate list added so that the comparison is not won on a category it lacked.
"""

from __future__ import annotations

from imagegate.safety.verdict import Action

ORIGINAL_BLOCKLIST: dict[str, tuple[str, ...]] = {
    "violence": ("violence", "violent", "kill", "murder", "blood", "torture"),
    "gore": ("gore", "gory", "dismember", "mutilat", "decapitat"),
    "explicit": ("nude", "naked", "nsfw", "explicit", "porn", "sex"),
    "weapons": ("weapon", "gun", "knife", "bomb", "rifle", "pistol"),
    "hate": ("nazi", "swastika", "racist", "kkk"),
}
ORIGINAL_WARN_TERMS = ("injury", "accident", "dangerous")


def original_filter(prompt: str) -> Action:
    lowered = prompt.lower()
    if any(word in lowered for words in ORIGINAL_BLOCKLIST.values() for word in words):
        return Action.BLOCK
    if any(word in lowered for word in ORIGINAL_WARN_TERMS):
        return Action.WARN
    return Action.ALLOW
