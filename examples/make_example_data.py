"""Write bertkit's small example data sets (src/bertkit/data/) from templates.

The sentences are generated here from hand-written templates and word lists (no external
data set is copied), with a fixed seed, so running this again gives the same files:

* topics_train.csv / topics_test.csv: ``text,label`` with three topics
  (cooking, sports, technology), 120 / 40 rows per topic;
* topics_unlabelled.csv: ``text`` only, for ``bertkit predict --input``;
* pairs_train.tsv / pairs_test.tsv: ``first<TAB>second<TAB>label``, label ``same`` when
  both sentences are about the same topic, else ``different`` (a sentence-pair task);
* reviews_train.csv / reviews_test.csv: ``text,label``, short product reviews labelled
  positive, negative or mixed, 120 / 40 rows per label: a task with real confusions.

Run: python examples/make_example_data.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "bertkit" / "data"

WORDS = {
    "cooking": {
        "subject": ["my grandmother", "the chef", "our neighbour", "the baker", "a home cook",
                    "the restaurant", "my brother", "the cooking class", "the food blogger",
                    "my aunt", "the kitchen team", "the caterer"],
        "thing": ["the lentil soup", "a loaf of sourdough", "the tomato sauce", "the apple pie",
                  "a pot of rice", "the roast chicken", "the vegetable curry", "fresh pasta",
                  "the pancake batter", "a lemon cake", "the mushroom risotto", "the bean stew",
                  "garlic bread", "the onion tart", "a spicy chili", "the cinnamon rolls"],
        "verb": ["simmered", "baked", "seasoned", "stirred", "roasted", "tasted", "chopped herbs for",
                 "burned", "reheated", "served", "kneaded the dough for", "prepared"],
        "detail": ["for forty minutes", "with too much salt", "in a cast iron pan",
                   "before the guests arrived", "over a low flame", "with butter and thyme",
                   "until it turned golden", "using an old family recipe", "in the oven at night",
                   "with a pinch of pepper", "on the small stove", "for the Sunday lunch"],
        "extra": ["The kitchen smelled of garlic.", "Nobody asked for seconds.",
                  "The recipe needs more vinegar.", "Leftovers went into the fridge.",
                  "The dough did not rise this time.", "Everyone wanted the recipe."],
    },
    "sports": {
        "subject": ["the goalkeeper", "our team", "the striker", "the coach", "the home side",
                    "the young sprinter", "the captain", "the visiting club", "the referee",
                    "the tennis champion", "the relay squad", "the rookie"],
        "thing": ["the final match", "the penalty shootout", "the season opener", "the derby",
                  "the cup semi-final", "the marathon", "the league title", "the training session",
                  "the away game", "the second half", "the championship round", "the qualifier",
                  "the friendly game", "the hundred metres", "the tie-break", "the playoff"],
        "verb": ["won", "lost", "dominated", "scored twice in", "was sent off during", "trained hard for",
                 "celebrated", "drew", "missed a chance in", "defended well in", "lost focus in",
                 "sprinted through"],
        "detail": ["in front of a full stadium", "after extra time", "in the rain",
                   "with a late goal", "despite an injury", "by three points", "on a muddy pitch",
                   "before the break", "after a long losing streak", "in the last minute",
                   "with ten players", "on home turf"],
        "extra": ["The fans sang until midnight.", "The manager praised the defence.",
                  "Tickets sold out in an hour.", "The keeper made five saves.",
                  "The league table is tight.", "The crowd booed the decision."],
    },
    "technology": {
        "subject": ["the startup", "our IT department", "the developer", "the chip maker",
                    "the phone company", "a security researcher", "the software team",
                    "the cloud provider", "the engineer", "my laptop", "the app", "the robot"],
        "thing": ["the new operating system", "a faster processor", "the database server",
                  "the mobile app", "a software update", "the encryption library", "the web browser",
                  "the smart watch", "the graphics card", "the search engine", "the battery firmware",
                  "a machine learning model", "the network router", "the code repository",
                  "the login page", "the backup system"],
        "verb": ["released", "patched", "crashed", "rebooted", "upgraded", "benchmarked",
                 "debugged", "installed", "encrypted", "downloaded", "tested", "shipped"],
        "detail": ["after a security flaw was found", "with twice the memory", "overnight",
                   "for all users", "without a reboot", "on the company servers",
                   "using open source code", "before the product launch", "in the data centre",
                   "with a new chip", "after the outage", "over a slow connection"],
        "extra": ["The download took an hour.", "Users reported a bug.", "The battery lasts longer now.",
                  "The source code is on GitHub.", "The servers ran hot.", "Passwords were reset."],
    },
}

TEMPLATES = [
    "{Subject} {verb} {thing} {detail}.",
    "Yesterday {subject} {verb} {thing}.",
    "{Subject} {verb} {thing} {detail}. {extra}",
    "I heard that {subject} {verb} {thing} {detail}.",
    "{Thing} was {verb_passive} by {subject} {detail}.",
    "Have you seen how {subject} {verb} {thing}?",
    "{extra} {Subject} {verb} {thing}.",
]

PASSIVE = {"simmered": "simmered", "baked": "baked", "seasoned": "seasoned", "stirred": "stirred",
           "roasted": "roasted", "tasted": "tasted", "burned": "burned", "reheated": "reheated",
           "served": "served", "prepared": "prepared", "won": "won", "lost": "lost",
           "dominated": "dominated", "celebrated": "celebrated", "drew": "drawn",
           "released": "released", "patched": "patched", "crashed": "crashed",
           "rebooted": "rebooted", "upgraded": "upgraded", "benchmarked": "benchmarked",
           "debugged": "debugged", "installed": "installed", "encrypted": "encrypted",
           "downloaded": "downloaded", "tested": "tested", "shipped": "shipped"}


def sentence(topic: str, rng: random.Random) -> str:
    w = WORDS[topic]
    while True:
        template = rng.choice(TEMPLATES)
        verb = rng.choice(w["verb"])
        if "{verb_passive}" in template and verb not in PASSIVE:
            continue
        subject, thing = rng.choice(w["subject"]), rng.choice(w["thing"])
        text = template.format(subject=subject, Subject=subject[0].upper() + subject[1:],
                               thing=thing, Thing=thing[0].upper() + thing[1:], verb=verb,
                               verb_passive=PASSIVE.get(verb, verb), detail=rng.choice(w["detail"]),
                               extra=rng.choice(w["extra"]))
        return text


def unique_sentences(topic: str, n: int, rng: random.Random, seen: set) -> list:
    out = []
    while len(out) < n:
        s = sentence(topic, rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# --------------------------------------------------------------------------- reviews
# A harder task on purpose: short product reviews labelled positive, negative or mixed.
# Mixed reviews praise one thing and criticise another; some positive and negative reviews
# name a good and a bad thing too ("It is not true that the fan is loud; ...", "I wish I
# could say ...; ..."), and, as with reviews people label, about one label in ten is a
# neighbouring class (an annotator who weighed the review differently). So a fine-tuned
# model confuses mixed with the other two, and the confusion matrix and the learning
# curves show something (the topics set is so easy that every run scores 1.00).
REVIEW_GOOD = [
    "the battery lasts all day", "the screen is bright and sharp", "the sound is rich and clear",
    "setup took two minutes", "the case feels solid", "it charges quickly",
    "the camera takes lovely photos", "the keyboard is a joy to type on", "the price is fair",
    "support answered within an hour", "the app is simple to use", "it runs quietly",
    "the strap is comfortable", "delivery was fast", "the colours look natural",
    "the manual is clear", "it connects to my phone at once", "the fan stays silent",
]
REVIEW_BAD = [
    "the battery dies by noon", "the screen is dim and blurry", "the sound crackles",
    "setup took an entire evening", "the case creaked after a week", "it charges slowly",
    "the camera takes grainy photos", "the keys stick", "the price is far too high",
    "support never answered", "the app crashes constantly", "it rattles when it runs",
    "the strap broke on day two", "delivery took a month", "the colours look washed out",
    "the manual is useless", "it keeps losing the connection", "the fan is loud",
]
PRODUCTS = ["these headphones", "this tablet", "the new watch", "this speaker", "the laptop",
            "this camera", "the e-reader", "this phone", "the fitness band", "the monitor"]
REVIEW_TEMPLATES = {
    "positive": ["{G}, and {g}.", "I love {p}: {g}.", "Not bad at all: {g}.",
                 "I expected little from {p}, but {g}.", "{G}. Also, {g}.",
                 "Five stars for {p}; {g}.", "Honestly, {g} and {g2}.",
                 "It is not true that {b}; {g}.", "Someone said {b}, but for me {g}."],
    "negative": ["{B}, and {b}.", "I regret buying {p}: {b}.", "Not great: {b}.",
                 "I had high hopes for {p}, but {b}.", "{B}. Also, {b}.",
                 "One star for {p}; {b}.", "Honestly, {b} and {b2}.",
                 "I wish I could say {g}; {b}.", "The ad promised {g}, but {b}."],
    "mixed": ["{G}, but {b}.", "{B}, although {g}.", "I like {p}: {g}. Sadly, {b}.",
              "{G}. On the other hand, {b}.", "Not bad: {g}, yet {b}.",
              "Three stars for {p}; {g}, but {b}.", "Honestly, {b}, though {g}."],
}


def review(label: str, rng: random.Random) -> str:
    g, g2 = rng.sample(REVIEW_GOOD, 2)
    b, b2 = rng.sample(REVIEW_BAD, 2)
    text = rng.choice(REVIEW_TEMPLATES[label]).format(
        g=g, g2=g2, G=g[0].upper() + g[1:], b=b, b2=b2, B=b[0].upper() + b[1:],
        p=rng.choice(PRODUCTS))
    return text[0].upper() + text[1:]


def reviews(n_per_label: int, rng: random.Random, seen: set) -> list:
    rows = []
    labels = list(REVIEW_TEMPLATES)
    for label in labels:
        got = 0
        while got < n_per_label:
            text = review(label, rng)
            if text not in seen:
                seen.add(text)
                # one label in ten: a neighbouring class, as annotators disagree
                if rng.random() < 0.1:
                    label_given = "mixed" if label != "mixed" else rng.choice(labels[:2])
                else:
                    label_given = label
                rows.append((text, label_given))
                got += 1
    rng.shuffle(rows)
    return rows


def write_reviews() -> None:
    rng, seen = random.Random(20261123), set()
    for name, n in (("reviews_train.csv", 120), ("reviews_test.csv", 40)):
        with open(OUT / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(reviews(n, rng, seen))


def main() -> None:
    rng = random.Random(20261121)
    seen: set = set()
    topics = sorted(WORDS)
    train, test = [], []
    for topic in topics:
        train += [(s, topic) for s in unique_sentences(topic, 120, rng, seen)]
        test += [(s, topic) for s in unique_sentences(topic, 40, rng, seen)]
    rng.shuffle(train)
    rng.shuffle(test)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("topics_train.csv", train), ("topics_test.csv", test)):
        with open(OUT / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    unlabelled = [s for topic in topics for s in unique_sentences(topic, 4, rng, seen)]
    rng.shuffle(unlabelled)
    with open(OUT / "topics_unlabelled.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([s] for s in unlabelled)

    def pairs(n: int) -> list:
        rows = []
        for i in range(n):
            a = rng.choice(topics)
            same = i % 2 == 0
            b = a if same else rng.choice([t for t in topics if t != a])
            rows.append((sentence(a, rng), sentence(b, rng), "same" if same else "different"))
        rng.shuffle(rows)
        return rows

    for name, n in (("pairs_train.tsv", 240), ("pairs_test.tsv", 60)):
        with open(OUT / name, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["first", "second", "label"])
            writer.writerows(pairs(n))
    write_reviews()
    print(f"wrote {len(train)} + {len(test)} topic rows, {len(unlabelled)} unlabelled, "
          f"300 pairs, 360 + 120 reviews into {OUT}")


if __name__ == "__main__":
    main()
