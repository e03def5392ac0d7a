"""Transcripts for the synthesized corpus: smart-device commands, numbers, dates, times, names,
and general English sentences.

Commands and number/date/name sentences come from templates whose slots (rooms, devices, people,
numbers, dates, prices, phone numbers, ...) are filled at random, so hundreds of thousands of
distinct prompts come from a hundred-odd lines; numbers, dates and times are spelled out in words,
as a speaker says them. General sentences come from `texts/general.txt` (our own writing).
Every prompt uses only lowercase a-z, space and apostrophe.
"""

from __future__ import annotations

import random
import re
from importlib import resources

ALPHABET_PATTERN = re.compile(r"[a-z' ]+")
COMMAND_SHARE = 0.65  # templates (commands, numbers, dates, names); the rest are general sentences

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
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
    """A 12-hour clock time as spoken: "seven", "seven fifteen", "seven oh five",
    "half past seven"."""
    if minute == 0:
        return number_words(hour)
    if minute == 30:
        return f"half past {number_words(hour)}"
    if minute < 10:
        return f"{number_words(hour)} oh {number_words(minute)}"
    return f"{number_words(hour)} {number_words(minute)}"


def _time_of_day(rng: random.Random) -> str:
    time = clock_words(rng.randint(1, 12), rng.choice([0, 0, 5, 10, 15, 20, 30, 30, 45, 50]))
    return time + rng.choice(["", "", " in the morning", " in the evening", " a m", " p m",
                              " tonight"])


_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
             "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth "
             "twentieth").split()
_TENS_ORDINAL = {20: "twentieth", 30: "thirtieth"}
_MONTHS = ("january february march april may june july august september october november "
           "december").split()


def ordinal_words(n: int) -> str:
    """English ordinal for 1 <= n <= 31 ("twenty first")."""
    if not 1 <= n <= 31:
        raise ValueError(f"ordinal out of range: {n}")
    if n <= 20:
        return _ORDINALS[n - 1]
    tens, ones = divmod(n, 10)
    return _TENS_ORDINAL[tens * 10] if ones == 0 else f"{_TENS[tens]} {_ORDINALS[ones - 1]}"


def year_words(year: int) -> str:
    """A year as spoken: "nineteen eighty four", "two thousand and nine", "twenty twenty five"."""
    if 2000 <= year < 2010:
        return "two thousand" + (f" and {number_words(year - 2000)}" if year > 2000 else "")
    high, low = divmod(year, 100)
    if low == 0:
        return f"{number_words(high)} hundred"
    return f"{number_words(high)} {'oh ' + number_words(low) if low < 10 else number_words(low)}"


def _date(rng: random.Random) -> str:
    month, day = rng.choice(_MONTHS), ordinal_words(rng.randint(1, 28))
    return rng.choice([f"{month} {day}", f"the {day} of {month}", f"{month} {day}"])


def _digits(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(["oh", "zero"]) if d == 0 else _ONES[d]
                    for d in (rng.randint(0, 9) for _ in range(count)))


def _money(rng: random.Random) -> str:
    dollars, cents = rng.randint(1, 500), rng.choice([0, 0, 25, 50, 75, 99, rng.randint(1, 99)])
    text = f"{number_words(dollars)} dollar{'' if dollars == 1 else 's'}"
    return text + (f" and {number_words(cents)} cent{'' if cents == 1 else 's'}" if cents else "")


def _duration(rng: random.Random) -> str:
    amount = rng.choice([1, 2, 3, 5, 5, 10, 10, 12, 15, 20, 25, 30, 40, 45, 90])
    unit = rng.choice(["minute", "minute", "second", "hour"])
    return f"{'one' if amount == 1 else number_words(amount)} {unit}{'' if amount == 1 else 's'}"


_SLOTS = {
    "room": ["kitchen", "living room", "bedroom", "bathroom", "hallway", "office", "garage",
             "dining room", "basement", "porch"],
    "light": ["lights", "lamp", "ceiling light", "floor lamp", "reading light"],
    "state": ["on", "off"],
    "device": ["fan", "tv", "heater", "air conditioner", "coffee maker", "speaker", "radio",
               "dishwasher"],
    "color": ["red", "blue", "green", "warm white", "yellow", "purple", "orange", "pink"],
    "genre": ["jazz", "rock music", "classical music", "the news", "some blues", "pop music",
              "my playlist", "relaxing music"],
    "artist": ["the beatles", "miles davis", "taylor swift", "bach", "the rolling stones", "adele",
               "nina simone"],
    "city": ["boston", "london", "paris", "chicago", "seattle", "denver", "tokyo", "berlin",
             "dallas", "madrid"],
    "day": ["today", "tomorrow", "tonight", "monday", "tuesday", "wednesday", "thursday", "friday",
            "saturday", "sunday", "this weekend"],
    "item": ["milk", "eggs", "bread", "coffee", "apples", "batteries", "paper towels", "rice",
             "butter", "cheese", "tomatoes", "onions", "shampoo", "dish soap", "orange juice",
             "bananas", "flour", "tea"],
    "first": ("james mary robert patricia john jennifer michael linda david elizabeth william "
              "barbara richard susan joseph jessica thomas sarah charles karen chris nancy daniel "
              "lisa matthew betty anthony sandra mark ashley paul emily steven donna andrew "
              "michelle joshua carol kevin amanda brian melissa george deborah tim rebecca jason "
              "laura ryan helen jacob anna gary olivia nick emma eric sophia jonathan grace "
              "stephen chloe larry maria justin priya scott wei frank aisha raj yuki carlos fatima "
              "omar ingrid pedro mei diego hannah leo zoe oscar ruby max lucy sam").split(),
    "last": ("smith johnson williams brown jones garcia miller davis rodriguez martinez wilson "
             "anderson taylor thomas moore jackson martin lee thompson white harris clark lewis "
             "robinson walker young allen king wright scott hill green adams baker nelson carter "
             "mitchell roberts turner phillips campbell parker evans edwards collins stewart "
             "morris murphy cook rogers morgan cooper peterson reed bailey kelly howard ward cox "
             "richardson wood watson brooks bennett gray hughes price sanders patel chen kim "
             "nguyen singh okafor novak fischer rossi silva tanaka").split(),
    "place": ["the airport", "the station", "the office", "the gym", "the library", "the hospital",
              "school", "the park", "the beach", "the dentist", "grandma's house",
              "the supermarket", "work", "home"],
    "app": ["the calendar", "my email", "the camera", "the maps", "the calculator",
            "the weather app", "my notes"],
    "appliance": ["oven", "washing machine", "dryer", "robot vacuum", "kettle", "fridge",
                  "microwave", "sprinkler", "doorbell camera", "space heater"],
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
    "date": _date,
    "year": lambda rng: year_words(rng.randint(1950, 2035)),
    "ordinal": lambda rng: ordinal_words(rng.randint(1, 31)),
    "money": _money,
    "phone": lambda rng: f"{_digits(rng, 3)} {_digits(rng, 3)} {_digits(rng, 4)}",
    "pin": lambda rng: _digits(rng, rng.choice([4, 4, 6])),
    "count": lambda rng: number_words(rng.randint(2, 999)),
    "large": lambda rng: number_words(rng.randint(1000, 999_999)),
    "floor": lambda rng: ordinal_words(rng.randint(1, 20)),
    "minutes": lambda rng: number_words(rng.randint(2, 59)),
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
    # names
    "call {first}",
    "call {first} {last}",
    "send a message to {first} saying i'm running late",
    "text {first} that i'll be there at {time}",
    "remind me to call {first} {day}",
    "when is {first}'s birthday",
    "add {first} {last} to my contacts",
    "what's {first} {last}'s phone number",
    "{first}'s number is {phone}",
    "share my location with {first}",
    "email {first} the report before {time}",
    "my name is {first} {last}",
    "is {first} coming to dinner {day}",
    # dates and years
    "what day is {date}",
    "add a meeting with {first} on {date} at {time}",
    "my appointment is on {date}",
    "remind me about the rent on the {ordinal}",
    "book a table for {small} on {date}",
    "she was born in {year}",
    "the house was built in {year}",
    "what happened in {year}",
    "the concert is on {date} {year}",
    "schedule a call for {day} at {time}",
    "how many days until {date}",
    # numbers, money, times
    "the total comes to {money}",
    "i owe {first} {money}",
    "transfer {money} to savings",
    "the flight leaves at {time} from gate {small}",
    "we are on the {floor} floor",
    "there are {count} people on the list",
    "the population is about {large}",
    "my pin is {pin}",
    "dial {phone}",
    "the bus comes in {minutes} minutes",
    "convert {count} miles to kilometers",
    "what's {count} divided by {small}",
    "what is {big} minus {count}",
    "the meeting ran {minutes} minutes over",
    "it costs {money} a month",
    "the score was {small} to {small}",
    # more device commands
    "turn {state} the {appliance}",
    "start the {appliance}",
    "is the {appliance} still running",
    "open {app}",
    "navigate to {place}",
    "how long will it take to get to {place}",
    "set the {appliance} to {percent}",
    "preheat the oven to {big} degrees",
    "close the blinds in the {room}",
    "open the curtains in the {room}",
    "turn {state} all the lights",
    "lock all the doors at {time}",
    "show me the front door camera",
    "what's on my calendar {day}",
    "read my last message",
    "mute the {device}",
    "unmute the {device}",
    "turn up the {device} in the {room}",
    "set the {room} {light} to {percent} at {time}",
    "play the next episode",
    "go back {minutes} seconds",
    "stop the {appliance} in {duration}",
]

_SLOT_PATTERN = re.compile(r"\{(\w+)\}")


def _fill(template: str, rng: random.Random) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return _GENERATED[name](rng) if name in _GENERATED else rng.choice(_SLOTS[name])

    return _SLOT_PATTERN.sub(value, template)


def general_sentences() -> list[str]:
    """The bundled general English sentences, one per line of `texts/general.txt`."""
    text = (resources.files("tinyasr.model.data").joinpath("texts/general.txt")
            .read_text(encoding="utf-8"))
    return [line.strip() for line in text.splitlines() if line.strip()]


def make_prompt(rng: random.Random, sentences: list[str]) -> str:
    """One transcript: a filled command template or a general sentence."""
    if rng.random() < COMMAND_SHARE:
        return _fill(rng.choice(_TEMPLATES), rng)
    return rng.choice(sentences)
