"""The embedded demo corpus: a small probabilistic grammar of child-directed English.

`babble demo` trains on text from this grammar and evaluates on minimal pairs drawn from it,
so the whole pipeline runs in minutes without downloading anything.

Lexicon (about 330 word types): people (with gender), animals, things, food and places as
singular/plural nouns; boys' and girls' names; verbs with base, 3rd-singular, past (most of
them irregular) and -ing forms and the frames each allows (intransitive, object, food object,
animate object or reflexive, motion to a place, reported clause); adjectives, prepositions,
determiners the/a/an/this/that/these/those/my/your/some/two/three/his/her/their, pronouns
and reflexives himself/herself/itself/themselves.

Utterances, CHILDES style (lower case but names; punctuation is a word of its own): present
statements (`every day ...`), past ones (`yesterday ...`), copulas, do-support negation
(`the dog does not like the ball .`), yes/no and wh-questions, reflexives, reported clauses
(`Anna says she likes the cat .`), modals, imperatives, deictics (`these are my shoes .`) and
interjections. Possessives and pronouns agree with the subject in number and gender. Nearly
half of the noun-phrase subjects carry a prepositional phrase or relative clause whose noun
mostly has the other number, so agreement cannot be learned from the nearest noun. About 30%
of lines carry a `*MOT:\t` or `*CHI:\t` speaker tag.

Minimal pairs (BLiMP jsonl, one `<UID>.jsonl` per phenomenon; the sentences differ in one word):

    sv_agreement_simple                  the dog runs .                 / the dog run .
    sv_agreement_across_pp               the dog near the cats runs .   / ... run .
    sv_agreement_across_relative_clause  the dog that sees the cats runs . / ... run .
    determiner_noun_agreement            Anna sees these dogs .         / Anna sees this dogs .
    anaphor_number_agreement             the boys wash themselves .     / ... himself .
    anaphor_gender_agreement             Anna washes herself .          / Anna washes himself .
    irregular_past_tense                 yesterday the dog went home .  / ... go home .
    do_support_negation                  the dog does not like it .     / ... does not likes it .
    do_support_question                  does the dog like it ?         / does the dog likes it ?

Held out by construction: a sentence of four or more words whose CRC-32 falls in a reserved
bucket is never written to the corpus, and a pair's good sentence must fall in that bucket;
bad sentences are ungrammatical, which the corpus grammar never produces. `write_minimal_pairs`
also drops any pair that meets its `exclude` set, and draws again.
"""

from __future__ import annotations

import functools
import json
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Lexicon
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Noun:
    """A noun: its two number forms, its kind (person/animal/thing/food/place) and gender.

    Gender is m or f for people, n for everything else.
    """

    sg: str
    pl: str
    kind: str
    gender: str


@dataclass(frozen=True)
class Verb:
    """A verb: base (also plural present), 3rd-singular, past and -ing forms, and its frames.

    Frames: i intransitive, t any object, f food object, a animate object (also reflexive),
    m motion to a place, s a clause whose subject pronoun refers to the verb's subject.
    """

    base: str
    s3: str
    past: str
    ing: str
    frames: str

    @property
    def irregular(self) -> bool:
        """True when the past is not the regular -ed form (went, ate, ...)."""
        b = self.base
        regular = {b + "ed", b + "d", b[:-1] + "ied", b + b[-1] + "ed"}
        return self.past not in regular


_NOUN_TABLE = """
boy boys person m | girl girls person f | man men person m | woman women person f
mom moms person f | dad dads person m | king kings person m | queen queens person f
dog dogs animal n | cat cats animal n | bird birds animal n | cow cows animal n | pig pigs animal n
duck ducks animal n | horse horses animal n | bunny bunnies animal n | bear bears animal n
frog frogs animal n | mouse mice animal n | monkey monkeys animal n
ball balls thing n | book books thing n | cup cups thing n | hat hats thing n | shoe shoes thing n
car cars thing n | truck trucks thing n | boat boats thing n | doll dolls thing n | box boxes thing n
chair chairs thing n | bed beds thing n | tree trees thing n | flower flowers thing n
apple apples food n | banana bananas food n | cookie cookies food n | cake cakes food n
egg eggs food n | carrot carrots food n
park parks place n | store stores place n | garden gardens place n | kitchen kitchens place n
zoo zoos place n
"""

_NAME_TABLE = """
Tom m | Sam m | Max m | Ben m | Anna f | Emma f | Lily f | Mia f
"""

_VERB_TABLE = """
run runs ran running i | jump jumps jumped jumping i | sleep sleeps slept sleeping i
sing sings sang singing i | cry cries cried crying i | laugh laughs laughed laughing i
fall falls fell falling i | swim swims swam swimming i | dance dances danced dancing i
play plays played playing i | sit sits sat sitting i | walk walks walked walking i
go goes went going m | come comes came coming m | see sees saw seeing ta | like likes liked liking ta
want wants wanted wanting t | find finds found finding ta | take takes took taking t
hold holds held holding t | throw throws threw throwing t | bring brings brought bringing t
push pushes pushed pushing ta | kick kicks kicked kicking t | have has had having t
make makes made making t | buy buys bought buying tf | break breaks broke breaking t
catch catches caught catching ta | eat eats ate eating fi | love loves loved loving a
wash washes washed washing ta | help helps helped helping a | hug hugs hugged hugging a
feed feeds fed feeding a | tickle tickles tickled tickling a | say says said saying s
think thinks thought thinking s
"""

ADJECTIVES = ("big", "little", "red", "blue", "green", "happy", "sad", "hungry", "sleepy", "funny", "nice",
              "hot", "wet", "dirty", "silly", "tired")
PREPOSITIONS = ("near", "behind", "with", "under", "on", "beside", "by", "in")
DETERMINERS = {  # word -> number it requires (None: either)
    "the": None, "a": "sg", "an": "sg", "this": "sg", "that": "sg", "these": "pl", "those": "pl",
    "my": None, "your": None, "some": "pl", "two": "pl", "three": "pl", "his": None, "her": None,
    "their": None,
}
SUBJECT_PRONOUNS = {"he": ("sg", "m"), "she": ("sg", "f"), "they": ("pl", "n"), "we": ("pl", "n"),
                    "you": ("pl", "n")}  # you/we take the base form, as plurals do
REFLEXIVES = {"himself": ("sg", "m"), "herself": ("sg", "f"), "itself": ("sg", "n"),
              "themselves": ("pl", None)}


def _table_rows(table: str) -> list[list[str]]:
    return [row.split() for line in table.strip().splitlines() for row in line.split("|")]


NOUNS = tuple(Noun(*row) for row in _table_rows(_NOUN_TABLE))
NAMES = {name: gender for name, gender in _table_rows(_NAME_TABLE)}
VERBS = tuple(Verb(*row) for row in _table_rows(_VERB_TABLE))

_KINDS_ANIMATE = ("person", "animal")
_KINDS_OBJECT = ("person", "animal", "thing", "food")
_KINDS_THING = ("animal", "thing", "food")
_DEMONSTRATIVE_SWAP = {"this": "these", "these": "this", "that": "those", "those": "that"}
_BE = {("sg", "present"): "is", ("pl", "present"): "are", ("sg", "past"): "was", ("pl", "past"): "were"}
_TAGS = ("*MOT:\t", "*CHI:\t")
_TAG_RE = re.compile(r"^\*[A-Z]{3}:\t")
_FRAMES, _FRAME_WEIGHTS = ("i", "t", "f", "a", "m"), (3, 4, 1, 2, 1)  # verb_phrase picks a frame
_ATTRACTOR_MISMATCH_P = 0.7
_RESERVED_BUCKETS = 16  # one sentence in 16 (of 4+ words) is kept out of the corpus


@functools.cache
def _nouns_of(kinds: tuple[str, ...], genders: str = "mfn") -> tuple[Noun, ...]:
    return tuple(n for n in NOUNS if n.kind in kinds and n.gender in genders)


@functools.cache
def _names_of(genders: str) -> tuple[str, ...]:
    return tuple(name for name, gender in NAMES.items() if gender in genders)


def _verbs_with(frame: str) -> tuple[Verb, ...]:
    return tuple(v for v in VERBS if frame in v.frames)


def _held_out(sentence: str) -> bool:
    """True for the sentences reserved for minimal pairs (never written to the corpus)."""
    return sentence.count(" ") >= 3 and zlib.crc32(sentence.encode()) % _RESERVED_BUCKETS == 0


def _other(number: str) -> str:
    return "pl" if number == "sg" else "sg"


# ---------------------------------------------------------------------------------------------
# Grammar
# ---------------------------------------------------------------------------------------------


@dataclass
class NP:
    """A noun phrase: its words and the agreement features of its head."""

    words: list[str]
    number: str
    gender: str


class Grammar:
    """Samples phrases and utterances from the demo grammar with one seeded `random.Random`."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    # -- noun phrases ---------------------------------------------------------------------

    def noun_phrase(self, kinds=_KINDS_OBJECT, number=None, det=None, genders="mfn", adj_p=0.12) -> NP:
        """`det (adj) noun`; a det-less plural (`dogs`) when det is ''. """
        r = self.rng
        noun = r.choice(_nouns_of(kinds, genders))
        number = number or r.choice(("sg", "pl"))
        if det is None:
            det = r.choice(_DETS[number])
        words = [det] if det else []
        if r.random() < adj_p:
            words.append(r.choice(ADJECTIVES))
        words.append(noun.sg if number == "sg" else noun.pl)
        if det == "a" and words[1][0] in "aeiou":
            words[0] = "an"
        return NP(words, number, noun.gender)

    def subject(self, number=None, modifier_p=0.45, pronoun_p=0.12, name_p=0.18, genders="mfn",
                pronouns=tuple(SUBJECT_PRONOUNS)) -> NP:
        """An animate subject: a name, a pronoun or a noun phrase, maybe with a PP or relative clause."""
        r = self.rng
        u = r.random()
        if u < name_p and number in (None, "sg"):
            name = r.choice(_names_of(genders))
            return NP([name], "sg", NAMES[name])
        if u < name_p + pronoun_p:
            options = [p for p in pronouns if number in (None, SUBJECT_PRONOUNS[p][0])
                       and SUBJECT_PRONOUNS[p][1] in genders]
            if options:
                pronoun = r.choice(options)
                return NP([pronoun], *SUBJECT_PRONOUNS[pronoun])
        np = self.noun_phrase(_KINDS_ANIMATE, number, genders=genders)
        v = r.random()
        if v < modifier_p * 0.55:
            self.add_pp(np)
        elif v < modifier_p:
            self.add_relative_clause(np)
        return np

    def attractor_number(self, np: NP) -> str:
        """The number of a noun inside a modifier of `np`: mostly the other one, so agreement
        with the head cannot be learned from the nearest noun."""
        return _other(np.number) if self.rng.random() < _ATTRACTOR_MISMATCH_P else np.number

    def add_pp(self, np: NP, attractor_number=None) -> None:
        """Append `near the cats`."""
        number = attractor_number or self.attractor_number(np)
        np.words += [self.rng.choice(PREPOSITIONS)] + self.noun_phrase(number=number, adj_p=0).words

    def add_relative_clause(self, np: NP, attractor_number=None, object_relative_p=0.15) -> None:
        """Append a subject relative `that sees the cats` or an object relative `that the cats see`."""
        r = self.rng
        other = self.noun_phrase(number=attractor_number or self.attractor_number(np), adj_p=0)
        rel = "who" if np.gender != "n" and r.random() < 0.3 else "that"
        verb = r.choice(_VERBS_T)
        if r.random() < object_relative_p:
            np.words += [rel] + other.words + [_present(verb, other.number)]
        else:
            np.words += [rel, _present(verb, np.number)] + other.words

    # -- verb phrases ---------------------------------------------------------------------

    def verb_phrase(self, form: Callable[[Verb], str], frame=None, verb=None, owner: NP | None = None
                    ) -> list[str]:
        """A verb (inflected by `form`) with what its frame needs after it.

        An object may take the possessive that agrees with `owner` (his/her/their).
        """
        r = self.rng
        frame = frame or r.choices(_FRAMES, _FRAME_WEIGHTS)[0]
        verb = verb or r.choice(_VERBS_BY_FRAME[frame])
        if frame not in verb.frames:
            frame = verb.frames[0]
        words = [form(verb)]
        if frame == "i":
            if r.random() < 0.2:
                words += [r.choice(("in", "at")), "the", r.choice(_PLACES).sg]
        elif frame == "m":
            words += ["home"] if r.random() < 0.2 else ["to", "the", r.choice(_PLACES).sg]
        else:
            kinds = {"a": _KINDS_ANIMATE, "f": ("food",)}.get(frame, _KINDS_THING)
            words += self.object_np(kinds, owner)
        return words

    def object_np(self, kinds, owner: NP | None = None) -> list[str]:
        """An object: a pronoun, a noun phrase, or one with `owner`'s possessive."""
        r = self.rng
        u = r.random()
        if u < 0.1:
            return [r.choice(("it", "them", "me"))]
        possessive = _possessive(owner) if owner else None
        if possessive and u < 0.6:
            return self.noun_phrase(kinds, det=possessive).words
        return self.noun_phrase(kinds).words

    # -- utterances -----------------------------------------------------------------------

    def utterance(self) -> list[str]:
        """One utterance as a list of words (last one is its punctuation)."""
        kind = self.rng.choices(_UTTERANCES, _UTTERANCE_WEIGHTS)[0]
        return kind(self)

    def statement_present(self) -> list[str]:
        subj = self.subject()
        head = self.rng.choice(_PRESENT_TIMES) if self.rng.random() < 0.12 else []
        return head + subj.words + self.verb_phrase(lambda v: _present(v, subj.number), owner=subj) + ["."]

    def statement_past(self) -> list[str]:
        r = self.rng
        head = r.choice(_PAST_TIMES) if r.random() < 0.75 else []
        subj = self.subject()
        return head + subj.words + self.verb_phrase(lambda v: v.past, owner=subj) + ["."]

    def copula(self) -> list[str]:
        r = self.rng
        subj = self.subject() if r.random() < 0.6 else self.noun_phrase()
        tense = "present" if r.random() < 0.75 else "past"
        be = _be(subj.number, tense)
        u = r.random()
        if u < 0.5:
            rest = [r.choice(ADJECTIVES)]
        elif u < 0.75:
            rest = [r.choice(("in", "on", "under", "near")), "the", r.choice(_PLACES + _THINGS).sg]
        else:
            rest = self.verb_phrase(lambda v: v.ing)
        return subj.words + [be] + rest + ["."]

    def negation(self) -> list[str]:
        r = self.rng
        subj = self.subject()
        u = r.random()
        if u < 0.55:
            aux = "does" if subj.number == "sg" else "do"
        elif u < 0.8:
            aux = "did"
        else:
            return subj.words + [_be(subj.number, "present"), "not", r.choice(ADJECTIVES), "."]
        return subj.words + [aux, "not"] + self.verb_phrase(lambda v: v.base, owner=subj) + ["."]

    def yes_no_question(self) -> list[str]:
        r = self.rng
        subj = self.subject(modifier_p=0.2)
        u = r.random()
        if u < 0.7:
            aux = "does" if subj.number == "sg" else "do"
        elif u < 0.8:
            aux = "did"
        elif u < 0.9:
            aux = "can"
        else:
            return [_be(subj.number, "present")] + subj.words + [r.choice(ADJECTIVES), "?"]
        return [aux] + subj.words + self.verb_phrase(lambda v: v.base, owner=subj) + ["?"]

    def wh_question(self) -> list[str]:
        r = self.rng
        u = r.random()
        if u < 0.35:
            subj = self.subject(modifier_p=0.1)
            aux = r.choice(("did", "does" if subj.number == "sg" else "do"))
            return ["what", aux] + subj.words + [r.choice(_VERBS_T).base, "?"]
        if u < 0.55:
            subj = self.noun_phrase(adj_p=0.1)
            return ["where", _be(subj.number, "present")] + subj.words + ["?"]
        if u < 0.8:
            return ["who"] + self.verb_phrase(lambda v: r.choice((v.s3, v.past))) + ["?"]
        subj = self.subject(modifier_p=0.1)
        return ["what", _be(subj.number, "present")] + subj.words + [r.choice(_VERBS_BY_FRAME["i"]).ing, "?"]

    def reflexive(self) -> list[str]:
        r = self.rng
        genders = "mf" if r.random() < 0.6 else "mfn"  # mostly people, whose gender shows
        subj = self.subject(modifier_p=0.15, pronoun_p=0.15, genders=genders, pronouns=_REFLEXIVE_PRONOUNS)
        verb = r.choice(_VERBS_BY_FRAME["a"])
        u = r.random()
        if u < 0.6:
            vp = [_present(verb, subj.number)]
        elif u < 0.85:
            vp = [verb.past]
        else:
            vp = ["does" if subj.number == "sg" else "do", "not", verb.base]
        return subj.words + vp + [_reflexive(subj), "."]

    def report(self) -> list[str]:
        """`Anna says she likes the cat .`: the pronoun agrees with the subject."""
        r = self.rng
        subj = self.subject(modifier_p=0.1, genders="mf" if r.random() < 0.7 else "mfn", pronouns=())
        verb = r.choice(_VERBS_BY_FRAME["s"])
        form = (lambda v: _present(v, subj.number)) if r.random() < 0.6 else (lambda v: v.past)
        return subj.words + [form(verb), _pronoun(subj)] + self.verb_phrase(form, owner=subj) + ["."]

    def modal(self) -> list[str]:
        subj = self.subject()
        modal = self.rng.choice(("can", "will", "should"))
        return subj.words + [modal] + self.verb_phrase(lambda v: v.base, owner=subj) + ["."]

    def imperative(self) -> list[str]:
        r = self.rng
        u = r.random()
        if u < 0.3:
            return ["look", "at"] + self.object_np(_KINDS_OBJECT) + ["!"]
        if u < 0.5:
            return ["give", "me"] + self.noun_phrase(("thing", "food")).words + ["."]
        if u < 0.7:
            return ["let's"] + self.verb_phrase(lambda v: v.base, frame="i") + ["."]
        return self.verb_phrase(lambda v: v.base, frame=r.choice("tf")) + [r.choice((".", "!"))]

    def deictic(self) -> list[str]:
        r = self.rng
        number = r.choice(("sg", "pl"))
        det = r.choice(("the", "my", "your", "a") if number == "sg" else ("the", "my", "your", ""))
        pointer = r.choice(("this", "that") if number == "sg" else ("these", "those"))
        np = self.noun_phrase(number=number, det=det, adj_p=0.3)
        return [pointer, _be(number, "present")] + np.words + ["."]

    def interjection(self) -> list[str]:
        return self.rng.choice(_INTERJECTIONS).split()


def _present(verb: Verb, number: str) -> str:
    return verb.s3 if number == "sg" else verb.base


def _be(number: str, tense: str) -> str:
    return _BE[number, tense]


def _possessive(np: NP) -> str | None:
    if np.number == "pl":
        return "their"
    return {"m": "his", "f": "her"}.get(np.gender)


def _reflexive(np: NP) -> str:
    return "themselves" if np.number == "pl" else {"m": "himself", "f": "herself", "n": "itself"}[np.gender]


def _pronoun(np: NP) -> str:
    return "they" if np.number == "pl" else {"m": "he", "f": "she", "n": "it"}[np.gender]


_DETS = {"sg": ("the", "the", "the", "a", "this", "that", "my", "your"),
         "pl": ("the", "the", "the", "these", "those", "my", "your", "some", "two", "three")}
_REFLEXIVE_PRONOUNS = ("he", "she", "they")
_PAST_TIMES = (["yesterday"], ["yesterday"], ["yesterday"], ["last", "night"])
_PRESENT_TIMES = (["every", "day"], ["now"])
_PLACES = _nouns_of(("place",))
_THINGS = _nouns_of(("thing",))
_VERBS_T = _verbs_with("t")
_VERBS_BY_FRAME = {f: _verbs_with(f) for f in "itfams"}
_INTERJECTIONS = ("yes .", "no .", "okay .", "uh oh !", "good job !", "oh no !", "all done .",
                  "thank you .", "wow !", "look !", "what is that ?", "night night .", "bye bye !")
_UTTERANCE_KINDS = {
    Grammar.statement_present: 24, Grammar.statement_past: 14, Grammar.copula: 7, Grammar.negation: 9,
    Grammar.yes_no_question: 12, Grammar.wh_question: 5, Grammar.reflexive: 12, Grammar.report: 8,
    Grammar.modal: 3, Grammar.imperative: 5, Grammar.deictic: 6, Grammar.interjection: 5,
}
_UTTERANCES = list(_UTTERANCE_KINDS)
_UTTERANCE_WEIGHTS = list(_UTTERANCE_KINDS.values())


# ---------------------------------------------------------------------------------------------
# Minimal pairs: each generator returns (good words, bad words), differing in one word
# ---------------------------------------------------------------------------------------------


def _random_verb(g: Grammar, verbs=None) -> tuple[str, Verb]:
    """A verb and one of its frames, leaving out verbs that take a clause."""
    verb = g.rng.choice(verbs or _SIMPLE_VERBS)
    return g.rng.choice(verb.frames), verb


def _agreement_pair(g: Grammar, subj: NP) -> tuple[list[str], list[str]]:
    """`subj` + a present verb (or is/are) that agrees / that does not."""
    r, i = g.rng, len(subj.words)
    if r.random() < 0.2:
        good = subj.words + [_be(subj.number, "present"), r.choice(ADJECTIVES), "."]
        bad_word = _be(_other(subj.number), "present")
    else:
        frame, verb = _random_verb(g)
        good = subj.words + g.verb_phrase(lambda v: _present(v, subj.number), frame, verb) + ["."]
        bad_word = _present(verb, _other(subj.number))
    return good, good[:i] + [bad_word] + good[i + 1:]


def _pair_sv_simple(g: Grammar):
    return _agreement_pair(g, g.subject(modifier_p=0))


def _pair_sv_across_pp(g: Grammar):
    subj = g.noun_phrase(_KINDS_ANIMATE, adj_p=0.1)
    g.add_pp(subj, attractor_number=_other(subj.number))
    return _agreement_pair(g, subj)


def _pair_sv_across_relative_clause(g: Grammar):
    subj = g.noun_phrase(_KINDS_ANIMATE, adj_p=0.1)
    g.add_relative_clause(subj, attractor_number=_other(subj.number), object_relative_p=0)
    return _agreement_pair(g, subj)


def _pair_determiner_noun(g: Grammar):
    r = g.rng
    subj = g.subject(modifier_p=0)
    number = r.choice(("sg", "pl"))
    det = r.choice(("this", "that") if number == "sg" else ("these", "those"))
    obj = g.noun_phrase(number=number, det=det)
    good = subj.words + [_present(r.choice(_VERBS_T), subj.number)] + obj.words + ["."]
    i = len(subj.words) + 1
    return good, good[:i] + [_DEMONSTRATIVE_SWAP[det]] + good[i + 1:]


def _reflexive_pair(g: Grammar, subj: NP, wrong: NP) -> tuple[list[str], list[str]]:
    """`subj verb REFL .` with the reflexive agreeing with `subj` / with `wrong`."""
    r = g.rng
    verb = r.choice(_VERBS_BY_FRAME["a"])
    verb_word = _present(verb, subj.number) if r.random() < 0.7 else verb.past
    good = subj.words + [verb_word, _reflexive(subj), "."]
    return good, good[:-2] + [_reflexive(wrong), "."]


def _pair_anaphor_number(g: Grammar):
    subj = g.subject(modifier_p=0, pronouns=_REFLEXIVE_PRONOUNS)
    return _reflexive_pair(g, subj, NP(subj.words, _other(subj.number), subj.gender))


def _pair_anaphor_gender(g: Grammar):
    subj = g.subject(number="sg", modifier_p=0, genders="mf", pronouns=_REFLEXIVE_PRONOUNS)
    return _reflexive_pair(g, subj, NP(subj.words, "sg", "f" if subj.gender == "m" else "m"))


def _pair_irregular_past(g: Grammar):
    frame, verb = _random_verb(g, _IRREGULAR_VERBS)
    subj = g.subject(modifier_p=0.1)
    good = ["yesterday"] + subj.words + g.verb_phrase(lambda v: v.past, frame, verb) + ["."]
    i = 1 + len(subj.words)
    return good, good[:i] + [verb.base] + good[i + 1:]


def _do_support_pair(g: Grammar, question: bool):
    """does/do/did with the base verb / with an inflected one, in a negation or a question."""
    frame, verb = _random_verb(g)
    subj = g.subject(modifier_p=0.1)
    if g.rng.random() < 0.7:
        aux, bad_word = ("does" if subj.number == "sg" else "do"), verb.s3
    else:
        aux, bad_word = "did", verb.past
    vp = g.verb_phrase(lambda v: v.base, frame, verb)
    good = [aux] + subj.words + vp + ["?"] if question else subj.words + [aux, "not"] + vp + ["."]
    i = len(good) - len(vp) - 1
    return good, good[:i] + [bad_word] + good[i + 1:]


def _pair_do_negation(g: Grammar):
    return _do_support_pair(g, question=False)


def _pair_do_question(g: Grammar):
    return _do_support_pair(g, question=True)


_SIMPLE_VERBS = tuple(v for v in VERBS if "s" not in v.frames)
_IRREGULAR_VERBS = tuple(v for v in _SIMPLE_VERBS if v.irregular)

# uid -> (BLiMP field, linguistics_term, generator)
PHENOMENA: dict[str, tuple[str, str, Callable[[Grammar], tuple[list[str], list[str]]]]] = {
    "sv_agreement_simple": ("morphology", "subject_verb_agreement", _pair_sv_simple),
    "sv_agreement_across_pp": ("morphology", "subject_verb_agreement", _pair_sv_across_pp),
    "sv_agreement_across_relative_clause": ("morphology", "subject_verb_agreement",
                                            _pair_sv_across_relative_clause),
    "determiner_noun_agreement": ("morphology", "determiner_noun_agreement", _pair_determiner_noun),
    "anaphor_number_agreement": ("morphology", "anaphor_agreement", _pair_anaphor_number),
    "anaphor_gender_agreement": ("morphology", "anaphor_agreement", _pair_anaphor_gender),
    "irregular_past_tense": ("morphology", "irregular_forms", _pair_irregular_past),
    "do_support_negation": ("syntax", "do_support", _pair_do_negation),
    "do_support_question": ("syntax", "do_support", _pair_do_question),
}


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------

_TAG_P = 0.3
_CORPUS_FILES = ("demo.train", "demo.dev")


def write_demo_corpus(out_dir, words: int, seed: int = 0, dev_fraction: float = 0.05) -> dict:
    """Write `demo.train` and `demo.dev` (every line one utterance) holding about `words` words.

    Words are whitespace-separated, speaker tags not counted. Every round(1/dev_fraction)-th
    line or so goes to dev. Returns {"train_words", "dev_words", "files"}.
    """
    if not isinstance(words, int) or words < 1:
        raise ValueError(f"words: expected a positive integer, got {words!r}")
    if not 0 <= dev_fraction < 1:
        raise ValueError(f"dev_fraction: expected a number in [0, 1), got {dev_fraction!r}")
    rng = random.Random(seed)
    grammar = Grammar(rng)
    splits: dict[str, list[str]] = {"train": [], "dev": []}
    counts = {"train": 0, "dev": 0}
    while counts["train"] + counts["dev"] < words:
        sentence = " ".join(grammar.utterance())
        if _held_out(sentence):
            continue
        line = sentence
        if rng.random() < _TAG_P:
            line = (_TAGS[0] if rng.random() < 0.75 else _TAGS[1]) + sentence
        n = len(splits["train"]) + len(splits["dev"])
        split = "dev" if int((n + 1) * dev_fraction) > int(n * dev_fraction) else "train"
        splits[split].append(line)
        counts[split] += sentence.count(" ") + 1
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for split, lines in splits.items():
        path = out / f"demo.{split}"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        files.append(str(path))
    return {"train_words": counts["train"], "dev_words": counts["dev"], "files": files}


def training_sentences(corpus_dir) -> set[str]:
    """The lines of `demo.train` and `demo.dev` in `corpus_dir`, speaker tags stripped."""
    sentences = set()
    for name in _CORPUS_FILES:
        path = Path(corpus_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (write it with write_demo_corpus)")
        with open(path, encoding="utf-8") as f:
            sentences.update(_TAG_RE.sub("", line.rstrip("\n"), count=1) for line in f)
    return sentences


def write_minimal_pairs(out_dir, pairs_per_phenomenon: int = 200, seed: int = 0,
                        exclude: set[str] | None = None) -> dict[str, int]:
    """Write `<UID>.jsonl` (BLiMP format) for every phenomenon in PHENOMENA; returns {uid: n_pairs}.

    Good sentences are distinct within a file, held out of any demo corpus by construction, and
    neither sentence of a pair is in `exclude`.
    """
    if not isinstance(pairs_per_phenomenon, int) or pairs_per_phenomenon < 1:
        raise ValueError(f"pairs_per_phenomenon: expected a positive integer, got {pairs_per_phenomenon!r}")
    exclude = exclude or set()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for uid, (field, term, generate) in PHENOMENA.items():
        pairs = _sample_pairs(uid, generate, pairs_per_phenomenon, random.Random(f"{seed}:{uid}"), exclude)
        rows = [{"sentence_good": good, "sentence_bad": bad, "field": field, "linguistics_term": term,
                 "UID": uid, "simple_LM_method": True, "one_prefix_method": False,
                 "two_prefix_method": False, "lexically_identical": False, "pairID": str(i)}
                for i, (good, bad) in enumerate(pairs)]
        (out / f"{uid}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        written[uid] = len(rows)
    return written


def _sample_pairs(uid, generate, n, rng, exclude) -> list[tuple[str, str]]:
    """Draw until `n` pairs with distinct, held-out good sentences not in `exclude`."""
    grammar = Grammar(rng)
    pairs, seen = [], set()
    max_draws = 1000 * n + 10_000
    for _ in range(max_draws):
        good_words, bad_words = generate(grammar)
        good, bad = " ".join(good_words), " ".join(bad_words)
        if good in seen or not _held_out(good) or good in exclude or bad in exclude:
            continue
        seen.add(good)
        pairs.append((good, bad))
        if len(pairs) == n:
            return pairs
    raise RuntimeError(f"{uid}: found only {len(pairs)} of {n} held-out pairs in {max_draws} draws; "
                       "ask for fewer pairs")
