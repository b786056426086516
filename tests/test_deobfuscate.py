"""Abuse spelled to dodge a filter reads as the words it spells; ordinary text is left alone."""

from __future__ import annotations

import pytest

from moderator.deobfuscate import classifier_input, readings, toxic_words


@pytest.mark.parametrize("written, read", [
    ("You are an i d i o t.", "You are an idiot."),
    ("s.t.u.p.i.d people", "stupid people"),
    ("f-u-c-k you", "fuck you"),
    ("i_d_i_o_t", "idiot"),
    ("you 1d10t", "you idiot"),
    ("what a b!tch", "what a bitch"),
    ("kiss my @ss", "kiss my ass"),
    ("$h!t", "shit"),
    ("\u0456d\u0456\u043et", "idiot"),  # Cyrillic i and o inside a Latin word
    ("\u0405tup\u0456d m\u043er\u043en", "Stupid moron"),
    ("\uff49\uff44\uff49\uff4f\uff54", "idiot"),  # full-width: NFKC
    ("they are v1l3", "they are vile"), ("h3ll0!", "hello!"),  # a leet word's last letters too
    ("I will \u0455tra\u0578\u0261le you", "I will strangle you"),  # Cyrillic s, Armenian n, Latin script g
    # a bar read as i or l, whichever makes a word (Cyrillic palochka, Cyrillic and Greek capital I)
    ("\u04cfoser", "loser"), ("anima\u04cfs", "animals"), ("k\u0456ll a\u04cf\u04cf", "kill all"),
    ("\u0406D\u0406OT", "IDIOT"), ("\u0399diot", "Idiot"), ("fi\u04cfthy \u0399\u0405\u041b", "filthy \u0399\u0405\u041b"),
    # small-capital look-alikes the confusables table lacks (Cyrillic and Greek k, Cyrillic m and t)
    ("\u043aill", "kill"), ("\u03baill \u0442he \u043cuslims", "kill the muslims"),
    # typos that can only be one word, and words glued together
    ("You are a stpuid idoit.", "You are a stupid idiot."), ("I will klil you", "I will kill you"),
    ("FITLHY", "FILTHY"), ("youidiot", "you idiot"), ("Muslims arefilthyparasites.", "Muslims are filthy parasites."),
    ("Ihate them", "I hate them"), ("You are aloser.", "You are a loser."),
    # a slip of one word though a commoner word is a changed letter away ("such"), or a glued reading
    # holds a rare word ("wroth")
    ("I will sohot you", "I will shoot you"), ("They are wrothless.", "They are worthless."),
    # a single letter beside a spelled-out word joins it; the joined word reads like any other
    ("I h a t e women.", "I hate women."), ("You are a s t u p i d man.", "You are a stupid man."),
    ("s t u i p d", "stupid"),
    # insults the dictionary lacks are added to it: their typos and glued forms read as them
    ("ur such a dmubass lol", "ur such a dumbass lol"), ("youasshole", "you asshole"), ("an ashole", "an asshole"),
    # a slip of two words, read by the word before it
    ("I haet women.", "I hate women."), ("the haet is on", "the heat is on"),
    # a letter left out, read by the word before it when a changed letter makes a commoner word alone
    # ("unless"); three-letter words only so
    ("Asian people are usless.", "Asian people are useless."), ("I hte Black people.", "I hate Black people."),
    ("going to rpi your head off", "going to rip your head off"), ("He is daed.", "He is dead."),
    # leet words with one letter or a long tail of digits, read whole when that spells a word
    ("I h473 Ch1n3$3 people.", "I hate Chinese people."), ("going to 5h007 you", "going to shoot you"),
    ("so w0r7hl355", "so worthless"),
    # short function words glued on; a word wholly in look-alike letters among English words
    ("Old people are toostupid.", "Old people are too stupid."), ("Allstraight men", "All straight men"),
    ("you are \u0501\u0435\u0430\u0501.", "you are dead."),
])
def test_obfuscated_words_read_as_plain_words(written, read):
    assert classifier_input(written) == read


@pytest.mark.parametrize("text", [
    "I was born on the 4th at 10am; mp3 files cost $5.", "covid19 in 2020", "R2D2 and B4 you go", "Hello!!! world!",
    "e-mail me at x@y.com or www.g00gle.com", "Привет мир, καλημέρα", "I am a Muslim.", "Web3 and x86 and 3D printers",
    "A normal sentence, with commas - and dashes.", "Café déjà vu, naïve façade", "Straße und Übermaß",
    "They aren't here and she couldn't come.", "MAGAphants and Trudeau", "I am nonbinary.", "Antifa marched.",
    "Women are sucm. daed",  # four letters swapped, alone: as often slang ("imma", "isnt") as a slip
    "MAGA, beaner and wigger", "cuck and libtard",  # one letter short of "MANGA", "beanery", "wiggler": not read as slips
    "WTH tbh smh lol, idk", "hte women",  # three-letter words: never in capitals, only by the word before
    "the form is on",  # a dictionary word, though a swap of "from"
    "i dont think theyre here",  # contractions without their apostrophe: as written
    "Arabs are d*sgusting.",  # masked letters are not typos
    "\u041e\u043d \u0441\u043a\u0430\u0437\u0430\u043b \u0441\u043e\u0440",  # Russian ("сор" looks like "cop")
    "Model A380 and F150 trucks, room 101",
])
def test_ordinary_text_is_left_alone(text):
    assert classifier_input(text) == text


@pytest.mark.parametrize("written, reading", [
    # a slip of an abusive word that normalize cannot tell from a commoner word a changed letter away
    ("Sikhs are disguting.", "Sikhs are disgusting."),
    ("i cant stand them, they are vle", "i cant stand them, they are vile"),  # vale, vel, vile, vole: vile tried
    ("I'll satb you if you post that again.", "I'll stab you if you post that again."),  # a four-letter swap
    ("Nobody cares what you think, bith.", "Nobody cares what you think, bitch."),
    ("All Muslims should be sht.", "All Muslims should be shit."),
    ("These fithy rats, they are the sucm of the earth.", "These filthy rats, they are the scum of the earth."),
    ("\u0405ikhs are disguting, I h a t e them", "Sikhs are disgusting, I hate them"),  # each reading read whole
])
def test_a_slip_of_an_abusive_word_is_read_as_it_too(written, reading):
    assert reading in readings(written, 4)
    assert classifier_input(written) != reading  # the one reading normalize picks is not changed


@pytest.mark.parametrize("text", [
    "She teaches math at the gop office, lol.",  # slips only of harmless words ("match", "goop")
    "You are a stpuid idoit.",  # normalize reads these itself
    "@USER @USER thanks",  # a mention is not a word as written
    "WTH is SHT",  # capitals of three letters or fewer
    "I am nonbinary.", "They are disgusting.",  # KEEP and dictionary words
])
def test_other_words_have_no_other_reading(text):
    assert readings(text, 4) == []


def test_readings_are_bounded_and_can_be_turned_off():
    text = "they are vle and sht"  # vle: vale, vel, vile, vole; sht: shot, shit, shut, shat: those marking toxic posts
    assert readings(text, 0) == []
    assert len(readings(text, 1)) == 1 and len(readings(text, 4)) <= 4
    assert all(r.startswith("they are ") for r in readings(text, 4))


def test_the_words_a_slip_may_be_read_as_mark_toxic_posts():
    words = toxic_words()
    assert {"disgusting", "scum", "vile", "stab", "bitch", "moron", "filthy"} <= words
    assert not {"the", "math", "match", "people", "muslims", "women", "gay"} & words
