"""Transcripts for the synthesized corpus: smart-device commands and general English sentences.

Commands come from templates whose slots (rooms, devices, numbers, times, ...) are filled at
random, so thousands of distinct prompts come from a few dozen lines; numbers and times are
spelled out in words, as a speaker says them. General sentences come from `texts/general.txt`.
Every prompt uses only lowercase a-z, space and apostrophe.
"""

from __future__ import annotations

import random
import re
from importlib import resources

ALPHABET_PATTERN = re.compile(r"[a-z' ]+")
COMMAND_SHARE = 0.65  # the rest are general sentences

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """English words for 0 <= n < 1,000,000 ("three hundred and twelve")."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number out of range: {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{number_words(thousands)} thousand" + (f" {number_words(rest)}" if rest else "")


def clock_words(hour: int, minute: int) -> str:
    """A 12-hour clock time as spoken: "seven", "seven fifteen", "seven oh five", "half past seven"."""
    if minute == 0:
        return number_words(hour)
    if minute == 30:
        return f"half past {number_words(hour)}"
    if minute < 10:
        return f"{number_words(hour)} oh {number_words(minute)}"
    return f"{number_words(hour)} {number_words(minute)}"


def _time_of_day(rng: random.Random) -> str:
    time = clock_words(rng.randint(1, 12), rng.choice([0, 0, 5, 10, 15, 20, 30, 30, 45, 50]))
    return time + rng.choice(["", "", " in the morning", " in the evening", " a m", " p m", " tonight"])


def _duration(rng: random.Random) -> str:
    amount = rng.choice([1, 2, 3, 5, 5, 10, 10, 12, 15, 20, 25, 30, 40, 45, 90])
    unit = rng.choice(["minute", "minute", "second", "hour"])
    return f"{'one' if amount == 1 else number_words(amount)} {unit}{'' if amount == 1 else 's'}"


_SLOTS = {
    "room": ["kitchen", "living room", "bedroom", "bathroom", "hallway", "office", "garage", "dining room", "basement", "porch"],
    "light": ["lights", "lamp", "ceiling light", "floor lamp", "reading light"],
    "state": ["on", "off"],
    "device": ["fan", "tv", "heater", "air conditioner", "coffee maker", "speaker", "radio", "dishwasher"],
    "color": ["red", "blue", "green", "warm white", "yellow", "purple", "orange", "pink"],
    "genre": ["jazz", "rock music", "classical music", "the news", "some blues", "pop music", "my playlist", "relaxing music"],
    "artist": ["the beatles", "miles davis", "taylor swift", "bach", "the rolling stones", "adele", "nina simone"],
    "city": ["boston", "london", "paris", "chicago", "seattle", "denver", "tokyo", "berlin", "dallas", "madrid"],
    "day": ["today", "tomorrow", "tonight", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "this weekend"],
    "item": ["milk", "eggs", "bread", "coffee", "apples", "batteries", "paper towels", "rice"],
}

_GENERATED = {
    "percent": lambda rng: number_words(rng.choice(range(5, 101, 5))) + " percent",
    "degrees": lambda rng: number_words(rng.randint(60, 80)) + " degrees",
    "celsius": lambda rng: number_words(rng.randint(16, 28)) + " degrees",
    "duration": _duration,
    "time": _time_of_day,
    "small": lambda rng: number_words(rng.randint(2, 99)),
    "big": lambda rng: number_words(rng.randint(100, 9999)),
    "volume": lambda rng: number_words(rng.randint(1, 10)),
}

_TEMPLATES = [
    "turn {state} the {room} {light}",
    "turn the {room} {light} {state}",
    "switch {state} the {light} in the {room}",
    "dim the {room} {light} to {percent}",
    "set the {room} {light} to {color}",
    "make the {light} brighter",
    "turn {state} the {device}",
    "switch {state} the {device} in the {room}",
    "set the thermostat to {degrees}",
    "set the temperature to {celsius}",
    "make it warmer in the {room}",
    "what's the temperature in the {room}",
    "lower the heat by {small} degrees",
    "set a timer for {duration}",
    "start a {duration} timer",
    "how much time is left on the timer",
    "cancel the timer",
    "set an alarm for {time}",
    "wake me up at {time}",
    "remind me to call mom at {time}",
    "cancel my alarm for {time}",
    "play {genre}",
    "play {genre} in the {room}",
    "play something by {artist}",
    "skip this song",
    "pause the music",
    "set the volume to {volume}",
    "turn the volume {state}",
    "what's the weather {day}",
    "will it rain in {city} {day}",
    "what's the forecast for {city}",
    "how cold will it be {day}",
    "what time is it in {city}",
    "what is {small} plus {small}",
    "what is {small} times {small}",
    "add {item} to my shopping list",
    "call {small} {small} {small}",
    "how many days until {day}",
    "the code is {big}",
    "lock the front door",
    "is the garage door open",
    "what time is it",
]

_SLOT_PATTERN = re.compile(r"\{(\w+)\}")


def _fill(template: str, rng: random.Random) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return _GENERATED[name](rng) if name in _GENERATED else rng.choice(_SLOTS[name])

    return _SLOT_PATTERN.sub(value, template)


def general_sentences() -> list[str]:
    """The bundled general English sentences, one per line of `texts/general.txt`."""
    text = resources.files("tinyasr.scripts").joinpath("texts/general.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def make_prompt(rng: random.Random, sentences: list[str]) -> str:
    """One transcript: a filled command template or a general sentence."""
    if rng.random() < COMMAND_SHARE:
        return _fill(rng.choice(_TEMPLATES), rng)
    return rng.choice(sentences)
