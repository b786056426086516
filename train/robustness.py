"""Robustness cases: short labelled statements about identity groups, quoted and negated abuse, insults,
threats, and the same abuse spelled to dodge a filter (issue 16, item 4).

A classifier that flags people for naming who they are ("I am a Muslim."), for saying something kind
about a group, for denying a prejudice or for reporting the abuse they received cannot be used for
compliance; one that misses "i d i o t" or "1d10t" is easy to walk around. This module writes the cases
that check both, from templates of its own (written for this project; nothing is copied from a data
set), and the two helpers training can reuse to build counterfactual and obfuscated examples:

- `generate(split=None) -> list[Case]`: every case, in a fixed order. No randomness except seeded
  obfuscation, so the list is the same in every run, process and machine.
- `swap_identity(text, to=None, seed=0)`: the text with one identity group's terms replaced by those of
  another group (a counterfactual: the label must not change); `counterfactuals(text)` gives one per other
  group, `identity_terms(text)` says where the group terms are. Bare adjectives that are everyday words
  ("white", "old", "deaf") count only before a word for people ("a white man", not "a white wall").
- `obfuscate(text, how, seed=0, words=None)`: the abusive words of a text spaced out ("i d i o t",
  "s.t.u.p.i.d"), in leetspeak or masked ("1d10t", "f*ck"), with look-alike letters from other
  scripts ("іdіоt" with Cyrillic і and о, which Unicode NFKC normalisation does not undo), with a typo
  ("idoit", "idot") or glued to the next word ("youidiot").

Case kinds (`Case.expected` is the right answer: True = toxic):

| kind | expected | what |
|---|---|---|
| neutral_identity | False | a plain statement naming a group ("I am a Muslim.", "My neighbour is gay.") |
| positive_identity | False | something kind about a group ("I love women.") |
| negated_hate | False | a prejudice denied ("I don't hate gay people.", "Immigrants are not criminals."); written ones and, held out whole (dev), ones composed of a denial frame and an attribute ("It's a myth that {plural} are {attr}.") |
| counter_speech | False | abuse quoted or reported in order to condemn it ('Calling someone a "retard" is not okay.') |
| violent_idiom | False | a violent word in a harmless idiom ("This traffic is killing me.", "I'll shoot you an email.") |
| explicit_hate | True | an attack on a group (category identity_attack); written ones, and, held out whole (dev), the denials' attributes asserted ("Everyone knows {plural} are {attr}.") and hate that negates something good ("{Plural} are not human.") |
| threat | True | a threat of violence against a person or a group (category threat); written ones and ones composed of an opening, a verb phrase and a condition ("I swear I'll break your legs tonight.") |
| insult | True | a personal insult (category insult) |
| group_insult | True | an insult at a group no law protects (a party, an ideology, a trade: "Libtards are such hypocrites.") or a person called a bigot ("My uncle is a racist pig."): category insult, not identity_attack, so the policy rewrites it |
| obfuscated_spacing, _leet, _homoglyph, _typo, _joined | True | an explicit_hate, threat or insult case, abusive words obfuscated |

Each toxic case that holds a word of TOXIC_WORDS is obfuscated once, one way: the source cases are dealt
out to the five obfuscated kinds in turn; in every third one about a group, the group's name is
obfuscated too.

`Case.group` is the identity group a case is about (None for personal insults and threats and for
counter-speech about personal abuse); `GROUPS` lists them, with their axis (religion, ethnicity,
nationality, gender, sexual_orientation, disability, age). Templates are filled for every group that
has the word forms they need, so each group sees the same phrasings (the fairness view compares
groups). `Case.split`: every third template of a kind, in the order written here, is "dev", the others
"train"; a model trained on the "train" cases can be judged on phrasings it never saw. The composed
denials and assertions and the hate that negates something good are "dev" whole (evaluation only).
"""

from __future__ import annotations

import random
import re
import string
import unicodedata
from dataclasses import dataclass

BENIGN_KINDS = ("neutral_identity", "positive_identity", "negated_hate", "counter_speech", "violent_idiom")
GROUP_KINDS = ("neutral_identity", "positive_identity", "negated_hate", "counter_speech", "explicit_hate", "threat")
TOXIC_KINDS = ("explicit_hate", "threat", "insult")
OPEN_KINDS = ("group_insult",)  # toxic, and rewritable: insults at groups no law protects (GROUP_INSULT)
OBFUSCATIONS = ("spacing", "leet", "homoglyph", "typo", "joined")
OBFUSCATED_KINDS = tuple(f"obfuscated_{how}" for how in OBFUSCATIONS)
KINDS = BENIGN_KINDS + TOXIC_KINDS + OPEN_KINDS + OBFUSCATED_KINDS
EXPECTED = {kind: kind not in BENIGN_KINDS for kind in KINDS}
AXES = ("religion", "ethnicity", "nationality", "gender", "sexual_orientation", "disability", "age")


@dataclass(frozen=True)
class Group:
    name: str
    axis: str
    plural: str  # "Muslims", "Jewish people"
    pred: str  # after "I am" / "my neighbour is": "a Muslim", "Jewish", "a woman"
    singular: str  # "a Muslim", "a Jewish person"
    adj: str | None  # before a noun ("a Jewish family"); None when the group has no such adjective


@dataclass(frozen=True)
class Case:
    text: str
    kind: str
    expected: bool  # True: toxic
    group: str | None  # the identity group the case is about
    category: str | None  # toxic kinds: identity_attack, threat or insult
    template: str  # "neutral_identity/03"; obfuscated cases keep their source's template
    split: str  # "train" or "dev" (by template)


def _g(name: str, axis: str, plural: str, pred: str, singular: str, adj: str | None) -> Group:
    return Group(name, axis, plural, pred, singular, adj)


GROUPS: tuple[Group, ...] = (
    _g("muslim", "religion", "Muslims", "a Muslim", "a Muslim", "Muslim"),
    _g("jewish", "religion", "Jewish people", "Jewish", "a Jewish person", "Jewish"),
    _g("christian", "religion", "Christians", "a Christian", "a Christian", "Christian"),
    _g("hindu", "religion", "Hindus", "a Hindu", "a Hindu", "Hindu"),
    _g("sikh", "religion", "Sikhs", "a Sikh", "a Sikh", "Sikh"),
    _g("buddhist", "religion", "Buddhists", "a Buddhist", "a Buddhist", "Buddhist"),
    _g("catholic", "religion", "Catholics", "a Catholic", "a Catholic", "Catholic"),
    _g("atheist", "religion", "atheists", "an atheist", "an atheist", "atheist"),
    _g("black", "ethnicity", "Black people", "Black", "a Black person", "Black"),
    _g("white", "ethnicity", "white people", "white", "a white person", "white"),
    _g("asian", "ethnicity", "Asian people", "Asian", "an Asian person", "Asian"),
    _g("latino", "ethnicity", "Latinos", "Latino", "a Latino", "Latino"),
    _g("arab", "ethnicity", "Arabs", "Arab", "an Arab", "Arab"),
    _g("native_american", "ethnicity", "Native Americans", "Native American", "a Native American",
       "Native American"),
    _g("roma", "ethnicity", "Roma people", "Roma", "a Roma person", "Roma"),
    _g("mexican", "nationality", "Mexicans", "Mexican", "a Mexican", "Mexican"),
    _g("chinese", "nationality", "Chinese people", "Chinese", "a Chinese person", "Chinese"),
    _g("indian", "nationality", "Indians", "Indian", "an Indian", "Indian"),
    _g("nigerian", "nationality", "Nigerians", "Nigerian", "a Nigerian", "Nigerian"),
    _g("polish", "nationality", "Polish people", "Polish", "a Polish person", "Polish"),
    _g("immigrant", "nationality", "immigrants", "an immigrant", "an immigrant", "immigrant"),
    _g("refugee", "nationality", "refugees", "a refugee", "a refugee", "refugee"),
    _g("women", "gender", "women", "a woman", "a woman", None),
    _g("men", "gender", "men", "a man", "a man", None),
    _g("trans", "gender", "trans people", "trans", "a trans person", "trans"),
    _g("nonbinary", "gender", "nonbinary people", "nonbinary", "a nonbinary person", "nonbinary"),
    _g("gay", "sexual_orientation", "gay people", "gay", "a gay person", "gay"),
    _g("lesbian", "sexual_orientation", "lesbians", "a lesbian", "a lesbian", "lesbian"),
    _g("bisexual", "sexual_orientation", "bisexual people", "bisexual", "a bisexual person", "bisexual"),
    _g("straight", "sexual_orientation", "straight people", "straight", "a straight person", "straight"),
    _g("deaf", "disability", "deaf people", "deaf", "a deaf person", "deaf"),
    _g("blind", "disability", "blind people", "blind", "a blind person", "blind"),
    _g("autistic", "disability", "autistic people", "autistic", "an autistic person", "autistic"),
    _g("disabled", "disability", "disabled people", "disabled", "a disabled person", "disabled"),
    _g("wheelchair_user", "disability", "wheelchair users", "a wheelchair user", "a wheelchair user", None),
    _g("mentally_ill", "disability", "people with a mental illness", "mentally ill",
       "a person with a mental illness", "mentally ill"),
    _g("old", "age", "old people", "old", "an old person", "elderly"),
    _g("young", "age", "young people", "young", "a young person", "young"),
    _g("teenager", "age", "teenagers", "a teenager", "a teenager", None),
)
GROUP_BY_NAME = {g.name: g for g in GROUPS}

# --- templates -----------------------------------------------------------------------------------------
# Slots: {plural} {pred} {singular} {adj} {a_adj} ("a Black", "an Asian"); a capitalised slot name
# ({Plural}) capitalises the value's first letter, a trailing _l ({plural_l}) lower-cases it (casual
# posts). Personal templates use {noun} and {adj_insult} (insults) or {quoted} (counter-speech).

NEUTRAL = (
    "I am {pred}.",
    "My neighbour is {pred}.",
    "She is {a_adj} woman who teaches math.",
    "As {singular}, I take the bus to work every morning.",
    "Some of my coworkers are {plural}.",
    "I met {a_adj} couple at the park today.",
    "The survey asked how many {plural} work in tech.",
    "My cousin is {pred} and lives near the coast.",
    "There is a documentary about {plural} on TV tonight.",
    "{Plural} came to the town meeting last night.",
    "just so you know, i'm {pred_l}",
)
POSITIVE = (
    "I love {plural}.",
    "{Plural} are wonderful neighbours.",
    "I am proud to be {pred}.",
    "{Plural} make this city a better place.",
    "My {adj} friends are the kindest people I know.",
    "{Plural} deserve the same respect as everyone else.",
    "Some of the smartest people I have worked with are {plural}.",
    "Thank you to all the {plural} who volunteered at the food bank this weekend.",
    "honestly {plural_l} are some of the nicest people ive met",
)
NEGATED = (
    "I don't hate {plural}.",
    "{Plural} are not criminals.",
    "I would never say that {plural} are stupid.",
    "It is wrong to claim that {plural} are dangerous.",
    "No, {plural} are not taking our jobs.",
    "I have nothing against {plural}.",
    "{Plural} are not inferior to anyone.",
    "There is no reason to be afraid of {plural}.",
    "i dont think {plural_l} are disgusting at all",
    # added 2026-11-29
    "It is not true that {plural} are violent.",
    "I don't think {plural} are worse than anyone else.",
    "Nobody should call {plural} lazy.",
    "{Plural} are not a threat to this country.",
    "I refuse to believe that {plural} are evil.",
    "Claiming that {plural} are dirty is just wrong.",
    "i dont hate {plural_l}, never have",
    "{Plural} are not stupid, and they never were.",
    "I don't want {plural} to leave; they belong here.",
)
# Added 2026-12-06: the first model learned the negation templates, not negation (40% of the held-out
# phrasings flagged). Denials composed of a frame and an attribute, and, held out, the same attributes
# asserted (hate, explicit_hate). Each frame is filled for a third of the groups (every group in the same
# number of frames), the attribute turning with the group. No frame repeats a held-out NEGATED template.
# Evaluation only (split "dev" whole) since 2026-12-07: two models trained on a third of the frames
# (classifier-v7 and -v8) flagged the held-out denials as often as the model that never saw one (37% and
# 37% against 38%; 34% for a second seed of that model) and kind words about groups more often.
ATTRIBUTES = ("lazy", "stupid", "dirty", "violent", "criminals", "dangerous", "disgusting", "evil", "inferior",
              "animals", "parasites", "terrorists", "liars", "thieves", "greedy", "ugly", "savages", "useless")
NEGATION_FRAMES = (
    "It's a myth that {plural} are {attr}.",
    "Stop saying {plural} are {attr}.",
    "{Plural} aren't {attr}.",
    "I don't believe {plural} are {attr}.",
    "Saying {plural} are {attr} is a lie.",
    "It's unfair to call {plural} {attr}.",
    "The idea that {plural} are {attr} is prejudiced nonsense.",
    "i dont believe for a second that {plural_l} are {attr}",
    "Why do people keep saying {plural} are {attr}? It's simply not true.",
    "We should stop pretending {plural} are {attr}.",
    "Not a single study shows that {plural} are {attr}.",
    "{Plural} are not {attr}, that's a stereotype.",
    "My grandfather thought {plural} were {attr}; he was wrong.",
    "Don't let anyone tell you {plural} are {attr}.",
    "No, {plural} are not {attr}, and it's sad that this needs saying.",
    "It is simply false that {plural} are {attr}.",
    "nope, {plural_l} are not {attr}. at all.",
    "Anyone who says {plural} are {attr} is repeating a stereotype.",
)
ASSERTION_FRAMES = (
    "{Plural} are {attr}.",
    "Everyone knows {plural} are {attr}.",
    "Let's be honest, {plural} are {attr}.",
    "i swear {plural_l} are all {attr}",
    "{Plural} are {attr} and always will be.",
    "It's a fact that {plural} are {attr}.",
    "Face it, {plural} are {attr}.",
    "Of course {plural} are {attr}, just look at them.",
    "All {plural} are {attr}, every single one.",
)
# Hate that negates something good (not a denial of hate): negation alone must not mean clean. This and
# ASSERTION_FRAMES are evaluation only (split "dev" whole): a model trained on them beside the denials
# (2026-12-06) flagged positive statements about groups 12% of the time instead of 0.3% ("{Plural} deserve
# the same respect as everyone else." 56%, next to "{Plural} don't deserve any rights.") and denials no
# less often; MiniLM does not learn such minimal pairs from a few thousand templated examples.
HATE_NEGATED_POSITIVE = (
    "{Plural} are not human.",
    "I will never respect {plural}.",
    "{Plural} don't deserve any rights.",
    "{Plural} are not welcome here, get out.",
    "No {singular} should ever be trusted.",
    "{Plural} are not real people.",
    "I don't want {plural} living on my street.",
    "{Plural} can never be trusted.",
    "{Plural} don't belong in this country.",
)
COUNTER_GROUP = (
    'Someone wrote "{Plural} go home" on the wall of our school, and we painted over it the same day.',
    'Saying "{Plural} are animals" is dehumanising, and it has no place here.',
    "My coworker said {plural} are lazy, so I reported him to HR.",
    '"I hate {plural}" is not an opinion, it is bigotry.',
    'The post calling {plural} "vermin" was removed, and rightly so.',
    "Someone on the train shouted that {plural} should go back where they came from, and several "
    "passengers stood up to him.",
    'People who claim "{Plural} are criminals" should look at the actual numbers.',
)
COUNTER_PERSONAL = (
    'Calling someone a "{quoted}" is not okay.',
    "He told me to go back to my country and I reported him.",
    'My son came home crying because a classmate called him a "{quoted}". I spoke to his teacher the next day.',
    'Please stop using "{quoted}" as an insult; it hurts real people.',
    'Someone in the comments called her a "{quoted}", so I flagged it.',
    'I reported the account that kept calling me "{quoted}" every day.',
    'You should not call people "{quoted}" just because they disagree with you.',
    'She was told to "go back to the kitchen" in a meeting, and the company apologised.',
)
QUOTED = ("retard", "idiot", "loser", "freak", "bitch", "moron")
HATE = (
    "I hate {plural}.",
    "{Plural} are disgusting.",
    "All {plural} are parasites.",
    "{Plural} are subhuman.",
    "Never trust {singular}, they are all liars.",
    "{Plural} are the scum of the earth.",
    "Get these filthy {plural} out of our neighbourhood.",
    "{Plural} are too stupid to be allowed to vote.",
    "i cant stand {plural_l}, they are vile",
)
THREAT_PERSONAL = (
    "I will kill you.",
    "I'm going to find out where you live and hurt you.",
    "Say that again and I will break your neck.",
    "You'd better watch your back, because I am coming to hurt you.",
    "I will beat you until you can't stand up.",
    "Someone should put a bullet in your head.",
    "If I see you at the meeting tomorrow, you are dead.",
    "I'm going to burn your house down with you inside.",
    "Keep posting and I will make sure you never walk again.",
    "I hope someone stabs you on your way home.",
    "I will slit your throat while you sleep.",
    "Meet me outside and I'll smash your face in.",
    "One more word and I will strangle you.",
    "i know where you live and im going to kill you",
)
# Added after the first model (2026-11-29): indexed after THREAT_GROUP, so the first templates keep their split.
THREAT_PERSONAL_MORE = (
    "I am going to kill you.",
    "You will not live to see next week.",
    "Post my name again and I will hunt you down.",
    "I'm going to punch you until you stop breathing.",
    "Watch yourself, I have a gun and I know your address.",
    "I swear I will stab you if you come near my family.",
    "You deserve a bullet, and I might be the one to give it to you.",
    "i will find you and i will hurt you",
    "Next time I see you I'm going to beat the hell out of you.",
    "I'll break every bone in your body.",
    "Sleep with one eye open, because I am coming for you.",
    "Report me again and I will set your car on fire.",
    "I'm going to make you bleed.",
    "you better hope we never meet, ill put you in the hospital",
    "I will drown you in the lake behind your house.",
    "Keep talking and you'll end up in a ditch.",
    "I'm going to shoot you the moment you walk out that door.",
    "I hope you get hit by a bus, and if not I'll do it myself.",
    "We will come to your house and drag you out.",
    "I'm going to choke you until you pass out.",
    "Your family will pay for this, I promise you.",
    "Someone needs to beat you to death.",
    "I am going to end your life.",
    "dont make me come over there and snap your neck",
    "I'll hurt your kids if you keep this up.",
    "You'd better run, because when I catch you, you're dead.",
)
THREAT_GROUP = (
    "We should kill all {plural}.",
    "I will shoot every one of the {plural} in this town.",
    "{Plural} need to be exterminated.",
)
THREAT_GROUP_MORE = (
    "All {plural} should be shot.",
    "Somebody should round up the {plural} and shoot them.",
    "{Plural} deserve to be hanged.",
    "If any {plural} move into this street, we will burn them out.",
    "Time to get the guns out and deal with the {plural}.",
    "{Plural} should be wiped off the face of the earth.",
)
# Threats composed of who speaks, what they will do and when: every verb phrase with a few seeded
# (opening, condition) pairs. The split goes by verb phrase: the dev phrases are never trained on.
THREAT_OPENINGS = ("I will", "I'm going to", "I swear I'll", "We are going to", "Someone should", "I'll",
                   "i will", "im gonna", "Just wait, I'm going to", "I promise I will")
THREAT_VERBS = (
    "kill you", "shoot you", "stab you", "break your legs", "beat you to a pulp", "burn your house down",
    "hunt you down and hurt you", "slit your throat", "put you in the ground", "cut you open", "strangle you",
    "smash your skull in", "run you over with my car", "blow your head off", "hurt your family",
    "put a bullet in you", "beat you half to death", "make you disappear for good", "snap your neck",
    "bash your face in", "set you on fire", "break your jaw", "rip your head off", "make you bleed",
)
THREAT_CONDITIONS = ("", " if you come near me again", " the next time I see you", " tonight", " when I find you",
                     " if you post that again", " and nobody will ever find you", " before the week is out")
THREATS_PER_VERB = 10
# Violent words in harmless idioms: not a threat, not toxic.
VIOLENT_IDIOMS = (
    "I'm going to kill it at the presentation tomorrow.", "This traffic is killing me.",
    "I'll shoot you an email tomorrow morning.", "We are going to beat them in the final.",
    "I could murder a pizza right now.", "She absolutely destroyed the competition.",
    "I'll hunt down that bug tonight.", "We smashed our sales target this quarter.",
    "That joke killed me, I couldn't stop laughing.", "You slayed that performance last night!",
    "My feet are killing me after that hike.", "He's going to crush the exam, he studied for weeks.",
    "I will fight for your right to say that.", "Let's shoot for Friday instead.",
    "I'm dying to see the new season.", "The comedian bombed on stage.", "Break a leg tonight!",
    "I'll take a stab at fixing the printer.", "The new update totally killed my battery.",
    "Our team got slaughtered 5-0 on Saturday.", "Kill the lights when you leave, please.",
    "I'm going to beat you at chess next time.", "Let's knock this out before lunch.",
    "He shot the photos for our wedding.", "The boss is going to murder me if I'm late again.",
    "You're killing it with these recipes.", "That hill destroyed my legs.",
    "We need to kill this process and restart the server.", "I'll burn the old files onto a disc.",
    "Stab the potatoes with a fork before baking.",
    # added 2026-12-06
    "Shoot me a text when you land.", "We killed some time at the mall.", "Kill the engine before you get out.",
    "That exam murdered me.", "I'm going to attack this problem first thing tomorrow.",
    "He blew up the balloon for the party.", "The band destroyed it last night, best show ever.",
    "I'll hit you up later.", "This salsa is so hot it could kill a horse.", "She nailed the interview.",
    "Let's beat the rush and leave early.", "I'm going to punch up this paragraph a bit.",
    "The storm knocked out our power.", "He's a killer guitarist.", "I'd kill for a cup of coffee right now.",
)
INSULT = (
    "You are {a_noun}.",
    "Shut up, you {adj_insult} {noun}.",
    "What {a_adj_insult} {noun} you are.",
    "Nobody cares what you think, {noun}.",
    "Are you always this {adj_insult}, or is today special?",
    "Go away, you {noun}.",
    "Your parents must be ashamed of raising such {a_adj_insult} {noun}.",
    "Fuck you, you {adj_insult} {noun}.",
    "Shut the fuck up, {noun}.",
    "Only {a_noun} would post something this {adj_insult}.",
    "ur such {a_noun} lol",
    "Read the thread before posting, you {adj_insult} {noun}.",
)
# Insults at groups that no hate-speech law protects (political sides, ideologies, trades, fans) and at
# people called bigots: toxic, rewritable insults, not attacks on a group (no text here is a forum post of
# the benchmarks' dev split). Real news-site comments attack these far more often than protected groups,
# and a model that reads them as identity attacks removes posts a rewrite would keep. Targets turn with
# the template (OPEN_TARGETS_PER_TEMPLATE each).
OPEN_TARGETS = (
    ("liberals", "a liberal"), ("conservatives", "a conservative"), ("Democrats", "a Democrat"),
    ("Republicans", "a Republican"), ("libtards", "a libtard"), ("lefties", "a leftie"),
    ("right-wingers", "a right-winger"), ("Trump supporters", "a Trump supporter"), ("Tories", "a Tory"),
    ("socialists", "a socialist"), ("politicians", "a politician"), ("cops", "a cop"), ("lawyers", "a lawyer"),
    ("journalists", "a journalist"), ("bankers", "a banker"), ("landlords", "a landlord"),
    ("bureaucrats", "a bureaucrat"), ("anti-vaxxers", "an anti-vaxxer"), ("hockey fans", "a hockey fan"),
    ("climate deniers", "a climate denier"), ("feminists", "a feminist"), ("vegans", "a vegan"),
)
GROUP_INSULT = (
    "{Target} are such hypocrites.",
    "{Target} are {adj_insult} {nouns}.",
    "All {target} are {nouns}.",
    "{Target} are too {adj_insult} to understand basic economics.",
    "Typical {singular_bare}, too {adj_insult} to read the article.",
    "Only {target} would fall for this garbage.",
    "{Target} are spineless {nouns}.",
    "Shut up, you {adj_insult} {singular_bare}.",
    "Bunch of {adj_insult} {target} ruining everything.",
    "{Target} have no brains and no shame.",
    "{Target} are lying scumbags, every one of them.",
    "i swear {target_l} are the dumbest people alive",
    "What a pack of {nouns} these {target} are.",
    "{Target} are {nouns} and crooks.",
    "Spoken like {a_adj_insult} {singular_bare}.",
)
GROUP_INSULT_NOUNS = ("idiots", "morons", "losers", "clowns", "liars", "cowards", "parasites", "sheep", "fools",
                      "crooks")
OPEN_TARGETS_PER_TEMPLATE = 6
BIGOT_INSULT = (
    "My uncle is a racist pig.",
    "You are a bigot and a liar.",
    "What a sexist jerk.",
    "Shut up, you homophobic moron.",
    "The mayor is a corrupt racist clown.",
    "She is a xenophobic idiot.",
    "You're nothing but a hateful bigot.",
    "Only a racist moron would write this.",
    "The senator is a misogynist pig.",
    "Typical racist troll, go away.",
    "THE COACH IS A SEXIST PIG",
    "Your boss sounds like a sexist dinosaur.",
    "What an ignorant bigot you are.",
    "The author is an antisemitic fool.",
    "Go away, you racist creep.",
)

INSULT_NOUNS = ("idiot", "moron", "loser", "imbecile", "clown", "jerk", "dumbass", "asshole", "retard", "bitch")
INSULT_ADJS = ("stupid", "pathetic", "worthless", "ugly", "dumb", "brainless", "useless", "disgusting")
INSULTS_PER_TEMPLATE = 7

# The words that carry the abuse in the toxic templates: what `obfuscate` hides by default.
TOXIC_WORDS = frozenset(INSULT_NOUNS + INSULT_ADJS + QUOTED + (
    "fuck", "shit", "hate", "parasites", "subhuman", "scum", "filthy", "liars", "vile", "vermin",
    "kill", "hurt", "neck", "beat", "bullet", "dead", "burn", "stabs", "slit", "throat", "smash", "strangle",
    "shoot", "exterminated", "stab", "pulp", "skull", "bleed", "bash", "hunt", "legs", "jaw", "shot", "hanged",
    "guns", "wiped", "disappear", "rip",
    "savages", "animals", "terrorists", "thieves", "criminals", "inferior", "lazy", "dirty", "evil", "greedy",
))


# --- filling templates ------------------------------------------------------------------------------------

_U_CONSONANT = ("use", "uni", "eu", "one", "usu")


def article(word: str) -> str:
    """'a' or 'an' for the word that follows (by its first letter, with the usual 'u'/'one' exceptions)."""
    lower = word.lower()
    return "an" if lower[:1] in "aeiou" and not lower.startswith(_U_CONSONANT) else "a"


def _with_article(word: str) -> str:
    return f"{article(word)} {word}"


def _slots(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _fill(template: str, values: dict[str, str | None]) -> str | None:
    """The template with its slots filled, or None when a slot has no value."""
    filled: dict[str, str] = {}
    for slot in _slots(template):
        base = slot[:-2] if slot.endswith("_l") else slot
        value = values.get(base[0].lower() + base[1:])
        if value is None:
            return None
        if slot.endswith("_l"):
            value = value.lower()
        elif base[0].isupper():
            value = value[0].upper() + value[1:]
        filled[slot] = value
    return template.format(**filled)


def _group_values(group: Group) -> dict[str, str | None]:
    return {"plural": group.plural, "pred": group.pred, "singular": group.singular, "adj": group.adj,
            "a_adj": _with_article(group.adj) if group.adj else None}


def _split(index: int) -> str:
    return "dev" if index % 3 == 2 else "train"


def _group_cases(kind: str, templates: tuple[str, ...], category: str | None = None,
                 offset: int = 0) -> list[Case]:
    cases = []
    for i, template in enumerate(templates):
        for group in GROUPS:
            text = _fill(template, _group_values(group))
            if text is not None:
                cases.append(Case(text, kind, EXPECTED[kind], group.name, category,
                                  f"{kind}/{offset + i:02d}", _split(offset + i)))
    return cases


def _counter_personal(offset: int) -> list[Case]:
    cases = []
    for i, template in enumerate(COUNTER_PERSONAL, start=offset):
        fills = [{"quoted": q} for q in QUOTED] if "quoted" in _slots(template) else [{}]
        for values in fills:
            cases.append(Case(template.format(**values), "counter_speech", False, None, None,
                              f"counter_speech/{i:02d}", _split(i)))
    return cases


def _insults() -> list[Case]:
    cases, seen = [], set()
    for i, template in enumerate(INSULT):
        for k in range(INSULTS_PER_TEMPLATE):
            noun = INSULT_NOUNS[(3 * i + k) % len(INSULT_NOUNS)]
            adj = INSULT_ADJS[(5 * i + k) % len(INSULT_ADJS)]
            values = {"noun": noun, "a_noun": _with_article(noun), "adj_insult": adj,
                      "a_adj_insult": _with_article(adj)}
            text = template.format(**{s: values[s] for s in _slots(template)})
            if text not in seen:
                seen.add(text)
                cases.append(Case(text, "insult", True, None, "insult", f"insult/{i:02d}", _split(i)))
    return cases


def _group_insults() -> list[Case]:
    """GROUP_INSULT over OPEN_TARGETS (targets and insult words turning with the template), then BIGOT_INSULT;
    template keys "group_insult/<i>" and "group_insult_bigot/<i>", split by template."""
    cases, seen = [], set()
    for i, template in enumerate(GROUP_INSULT):
        for k in range(OPEN_TARGETS_PER_TEMPLATE):
            plural, singular = OPEN_TARGETS[(4 * i + k) % len(OPEN_TARGETS)]
            adj = INSULT_ADJS[(3 * i + k) % len(INSULT_ADJS)]
            bare = singular.split(" ", 1)[1]
            values = {"target": plural, "singular": singular, "singular_bare": bare,
                      "nouns": GROUP_INSULT_NOUNS[(7 * i + k) % len(GROUP_INSULT_NOUNS)], "adj_insult": adj,
                      "a_adj_insult": _with_article(adj)}
            text = _fill(template, values)
            if text is not None and text not in seen:
                seen.add(text)
                cases.append(Case(text, "group_insult", True, None, "insult", f"group_insult/{i:02d}", _split(i)))
    cases += [Case(text, "group_insult", True, None, "insult", f"group_insult_bigot/{i:02d}", _split(i))
              for i, text in enumerate(BIGOT_INSULT)]
    return cases


def _personal_threats(templates: tuple[str, ...], offset: int) -> list[Case]:
    return [Case(t, "threat", True, None, "threat", f"threat/{i:02d}", _split(i))
            for i, t in enumerate(templates, start=offset)]


def _threats() -> list[Case]:
    """Personal and group threats, written and composed (THREAT_VERBS), in an order that keeps the
    split of the templates written first."""
    n_personal, n_group = len(THREAT_PERSONAL), len(THREAT_GROUP)
    cases = (_personal_threats(THREAT_PERSONAL, 0)
             + _group_cases("threat", THREAT_GROUP, "threat", offset=n_personal)
             + _personal_threats(THREAT_PERSONAL_MORE, n_personal + n_group)
             + _group_cases("threat", THREAT_GROUP_MORE, "threat",
                            offset=n_personal + n_group + len(THREAT_PERSONAL_MORE)))
    rng = random.Random("threats")
    pairs = [(o, c) for o in THREAT_OPENINGS for c in THREAT_CONDITIONS]
    for i, verb in enumerate(THREAT_VERBS):
        for opening, condition in rng.sample(pairs, THREATS_PER_VERB):
            text = f"{opening} {verb}{condition}"
            text += "" if opening[0].islower() else "."
            cases.append(Case(text, "threat", True, None, "threat", f"threat_composed/{i:02d}", _split(i)))
    return cases


def _composed(kind: str, frames: tuple[str, ...], category: str | None = None, key: str = "composed",
              split: str | None = None) -> list[Case]:
    """Frames x ATTRIBUTES: frame i is filled for every group whose index is i modulo 3 (so each group sees
    the same number of frames), the attribute turning with the group. Template key "<kind>_<key>/<i>",
    split by frame, or all `split`."""
    cases = []
    for i, frame in enumerate(frames):
        for k, group in enumerate(GROUPS):
            if k % 3 != i % 3:
                continue
            values = {**_group_values(group), "attr": ATTRIBUTES[(7 * i + k) % len(ATTRIBUTES)]}
            text = _fill(frame, values)
            if text is not None:
                cases.append(Case(text, kind, EXPECTED[kind], group.name, category, f"{kind}_{key}/{i:02d}",
                                  split or _split(i)))
    return cases


def _violent_idioms() -> list[Case]:
    """Each idiom as written, lower-cased without its last stop, and after "Honestly, "."""
    cases = []
    for i, idiom in enumerate(VIOLENT_IDIOMS):
        for text in (idiom, idiom.lower().rstrip(".!"), "Honestly, " + idiom[0].lower() + idiom[1:]):
            cases.append(Case(text, "violent_idiom", False, None, None, f"violent_idiom/{i:02d}", _split(i)))
    return cases


def _obfuscated(sources: list[Case]) -> list[Case]:
    """Each source case that holds an abusive word, obfuscated one way: the sources are dealt out to the
    obfuscations in turn. For every third case about a group the group's words are hidden too."""
    cases = []
    usable = [c for c in sources if toxic_words(c.text)]
    for i, case in enumerate(usable):
        how = OBFUSCATIONS[i % len(OBFUSCATIONS)]
        words = toxic_words(case.text)
        if case.group is not None and (i // len(OBFUSCATIONS)) % 3 == 0:
            group = GROUP_BY_NAME[case.group]
            words += [w for w in group.plural.split() if w.lower() not in ("people", "with", "a")]
        cases.append(Case(obfuscate(case.text, how, seed=i, words=words), f"obfuscated_{how}", True, case.group,
                          case.category, case.template, case.split))
    return cases


def generate(split: str | None = None) -> list[Case]:
    """Every case, in a fixed order (benign kinds, toxic kinds, then the obfuscated ones interleaved per
    source; hate templates added after the first model follow the insults).
    `split`: only the "train" or only the "dev" templates."""
    cases = (_group_cases("neutral_identity", NEUTRAL) + _group_cases("positive_identity", POSITIVE)
             + _group_cases("negated_hate", NEGATED) + _composed("negated_hate", NEGATION_FRAMES, split="dev")
             + _group_cases("counter_speech", COUNTER_GROUP)
             + _counter_personal(len(COUNTER_GROUP)) + _violent_idioms())
    # The hate added later comes last, so the cases before it keep their obfuscation. It is held out whole
    # (dev): trained on, it taught the model that kind words about groups are hate (see HATE_NEGATED_POSITIVE).
    toxic = (_group_cases("explicit_hate", HATE, "identity_attack") + _threats() + _insults()
             + _composed("explicit_hate", HATE_NEGATED_POSITIVE, "identity_attack", key="negated_positive",
                         split="dev")
             + _composed("explicit_hate", ASSERTION_FRAMES, "identity_attack", split="dev"))
    seen: set[str] = set()  # a composed case may repeat a written one ("Catholics are disgusting."): first wins
    cases, toxic = ([c for c in part if not (c.text in seen or seen.add(c.text))] for part in (cases, toxic))
    cases = cases + toxic + _obfuscated(toxic) + _group_insults()  # after the obfuscated: they keep theirs
    if split is not None:
        if split not in ("train", "dev"):
            raise ValueError(f"split must be 'train' or 'dev', not {split!r}")
        cases = [c for c in cases if c.split == split]
    return cases


def summary(cases: list[Case]) -> dict[str, dict[str, int]]:
    """Per kind: the number of cases, of toxic ones, of distinct groups and of dev cases."""
    out: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        of_kind = [c for c in cases if c.kind == kind]
        out[kind] = {"n": len(of_kind), "toxic": sum(c.expected for c in of_kind),
                     "groups": len({c.group for c in of_kind if c.group}),
                     "dev": sum(c.split == "dev" for c in of_kind)}
    return out


# --- identity terms and counterfactuals ------------------------------------------------------------------

# Bare adjectives that are also everyday words ("white wall", "old car", "polish the floor", "deaf
# ears"): they count as an identity term only before a word for people.
AMBIGUOUS = frozenset({"white", "black", "old", "young", "straight", "deaf", "blind", "disabled", "polish"})
PERSON_NOUNS = (
    "people", "person", "persons", "man", "men", "woman", "women", "boy", "boys", "girl", "girls", "guy", "guys",
    "kid", "kids", "child", "children", "family", "families", "friend", "friends", "neighbour", "neighbours",
    "neighbor", "neighbors", "colleague", "colleagues", "coworker", "coworkers", "student", "students",
    "teacher", "teachers", "couple", "couples", "community", "communities", "parent", "parents", "folks",
    "engineer", "engineers", "doctor", "doctors", "nurse", "nurses", "workers", "voters", "population",
    "citizens", "residents", "customers", "patients", "athletes",
)
_NOUN_AHEAD = r"(?=\s+(?:" + "|".join(PERSON_NOUNS) + r")\b)"
_NO_NOUN_AHEAD = r"(?!\s+(?:" + "|".join(PERSON_NOUNS) + r")\b)"


@dataclass(frozen=True)
class Term:
    start: int
    end: int
    group: str
    slot: str  # plural, singular, pred or adj: the form a replacement must take


def _term_patterns() -> list[tuple[re.Pattern[str], str, str]]:
    patterns: list[tuple[str, str, str]] = []
    for g in GROUPS:
        forms = {g.plural: "plural", g.singular: "singular"}
        forms.setdefault(g.pred, "pred")
        if g.adj:
            forms[g.adj] = "adj"  # a predicate that is also the adjective ("Jewish") counts as the adjective
        for form, slot in forms.items():
            body = r"(?<![\w-])" + re.escape(form).replace(r"\ ", r"\s+") + r"(?![\w-])"
            if slot in ("adj", "pred") and " " not in form and form.lower() in AMBIGUOUS:
                body += _NOUN_AHEAD  # "an old man": used as an adjective
                slot = "adj"
            elif slot in ("singular", "pred") and form.lower().startswith(("a ", "an ")):
                body += _NO_NOUN_AHEAD  # "a Muslim family": the adjective, not "a Muslim"
            patterns.append((body, g.name, slot))
    patterns.sort(key=lambda p: -len(p[0]))
    return [(re.compile(body, re.IGNORECASE), name, slot) for body, name, slot in patterns]


_PATTERNS = _term_patterns()


def identity_terms(text: str) -> list[Term]:
    """The identity terms in a text, left to right, without overlaps (the longest form wins)."""
    found = []
    for pattern, name, slot in _PATTERNS:
        for m in pattern.finditer(text):
            found.append(Term(m.start(), m.end(), name, slot))
    found.sort(key=lambda t: (t.start, -(t.end - t.start)))
    out: list[Term] = []
    for term in found:
        if not out or term.start >= out[-1].end:
            out.append(term)
    return out


def _form(group: Group, slot: str) -> str | None:
    return getattr(group, slot)


def _match_case(text: str, start: int, original: str, replacement: str) -> str:
    """A replacement cased like the text: all lower-case in a lower-case text, upper-case for an upper-case
    term, its first letter capitalised at the start of a sentence or of a quote, else as the group's form is
    written."""
    if text.islower():
        return replacement.lower()
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    prefix = text[:start].rstrip()
    if not prefix or prefix[-1] in ".!?" or re.search(r'(^|\s)["\u201c]$', prefix):
        return replacement[0].upper() + replacement[1:]
    return replacement


def swap_identity(text: str, to: str | None = None, seed: int = 0) -> str:
    """The text with every term of its first identity group replaced by the same form (plural, singular,
    predicate, adjective) of group `to`, or of a group picked by `seed` among those that have the forms
    needed. Case follows the text ("muslims" -> "women", "Muslims" at a sentence start -> "Women"), and an
    "a"/"an" just before an adjective follows the new word. A text without identity terms comes back
    unchanged. Raises ValueError for an unknown `to`, for `to` the group already there, or for a `to`
    that lacks a form the text needs (women have no adjective: "a Muslim family")."""
    terms = identity_terms(text)
    if not terms:
        return text
    source = terms[0].group
    mine = [t for t in terms if t.group == source]
    slots = {t.slot for t in mine}
    if to is None:
        options = [g for g in GROUPS if g.name != source and all(_form(g, s) for s in slots)]
        target = random.Random(f"swap|{seed}|{text}").choice(options)
    else:
        if to not in GROUP_BY_NAME:
            raise ValueError(f"unknown group {to!r}; groups: {', '.join(GROUP_BY_NAME)}")
        if to == source:
            raise ValueError(f"the text is already about {to!r}")
        target = GROUP_BY_NAME[to]
        missing = [s for s in slots if not _form(target, s)]
        if missing:
            raise ValueError(f"group {to!r} has no {missing[0]} form for {text!r}")
    out, cursor = [], 0
    for term in mine:
        before = text[cursor:term.start]
        form = _form(target, term.slot)
        assert form is not None
        new = _match_case(text, term.start, text[term.start:term.end], form)
        if term.slot == "adj":
            m = re.search(r"(?<!\w)([Aa]n?)(\s+)$", before)
            if m:
                fixed = article(new)
                fixed = fixed.capitalize() if m.group(1)[0].isupper() else fixed
                before = before[:m.start(1)] + fixed + m.group(2)
        out += [before, new]
        cursor = term.end
    out.append(text[cursor:])
    return "".join(out)


def counterfactuals(text: str) -> list[str]:
    """The text with its first identity group swapped for each other group that has the forms needed
    (empty when the text names no group)."""
    terms = identity_terms(text)
    if not terms:
        return []
    source = terms[0].group
    slots = {t.slot for t in terms if t.group == source}
    return [swap_identity(text, g.name) for g in GROUPS if g.name != source and all(_form(g, s) for s in slots)]


# --- obfuscation -------------------------------------------------------------------------------------------

LEET = {"a": "4@", "e": "3", "i": "1!", "o": "0", "s": "5$", "t": "7", "g": "9", "b": "8"}
# Letters from other scripts that look like Latin ones; NFKC keeps them (unlike full-width letters).
HOMOGLYPHS = {
    "a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456", "j": "\u0458", "o": "\u043e\u03bf",
    "p": "\u0440", "s": "\u0455", "x": "\u0445", "y": "\u0443", "h": "\u04bb", "d": "\u0501", "l": "\u04cf",
    "k": "\u03ba", "n": "\u0578", "u": "\u057d", "v": "\u03bd", "w": "\u051d", "g": "\u0261", "r": "\u0433",
    "A": "\u0410\u0391", "B": "\u0412\u0392", "C": "\u0421", "E": "\u0415\u0395", "H": "\u041d\u0397",
    "I": "\u0406\u0399", "K": "\u041a\u039a", "M": "\u041c\u039c", "O": "\u041e\u039f", "P": "\u0420\u03a1",
    "T": "\u0422\u03a4", "X": "\u0425\u03a7", "Y": "\u03a5",
}
SEPARATORS = (" ", " ", ".", "-", "_", "*")
_WORD = re.compile(r"[A-Za-z]+")


def toxic_words(text: str) -> list[str]:
    """The words of TOXIC_WORDS in a text, in order (as written)."""
    return [m.group(0) for m in _WORD.finditer(text) if m.group(0).lower() in TOXIC_WORDS]


def _space(word: str, rng: random.Random) -> str:
    return rng.choice(SEPARATORS).join(word)


def _leet(word: str, rng: random.Random) -> str:
    """Digits and symbols for letters ("1d10t") or masked vowels ("f*ck"); same length as the word."""
    chars = list(word)
    if rng.random() < 0.35:  # mask: one or all of the vowels after the first letter
        vowels = [i for i in range(1, len(chars)) if chars[i].lower() in "aeiouy"] or list(range(1, len(chars)))
        picked = vowels if rng.random() < 0.4 else [rng.choice(vowels)]
        for i in picked:
            chars[i] = "*"
        return "".join(chars)
    mappable = [i for i, c in enumerate(chars) if c.lower() in LEET]
    if not mappable:
        return _leet_fallback(word, rng)
    picked = [i for i in mappable if rng.random() < 0.7] or [rng.choice(mappable)]
    for i in picked:
        chars[i] = rng.choice(LEET[chars[i].lower()])
    return "".join(chars)


def _leet_fallback(word: str, rng: random.Random) -> str:
    chars = list(word)
    chars[rng.randrange(1, len(chars)) if len(chars) > 1 else 0] = "*"
    return "".join(chars)


def _homoglyph(word: str, rng: random.Random) -> str:
    chars = list(word)
    mappable = [i for i, c in enumerate(chars) if c in HOMOGLYPHS]
    if not mappable:
        return word
    picked = [i for i in mappable if rng.random() < 0.5] or [rng.choice(mappable)]
    for i in picked:
        chars[i] = rng.choice(HOMOGLYPHS[chars[i]])
    return "".join(chars)


def _typo(word: str, rng: random.Random) -> str:
    """A slip of the keyboard that keeps the first letter: two neighbouring letters swapped ("idoit") or
    one left out ("idot"); a word of two or three letters gets its last two swapped ("yuo")."""
    if len(word) <= 3:
        swapped = word[:-2] + word[-1] + word[-2]
        return swapped if swapped != word else word[:-1]
    if rng.random() < 0.5:
        spots = [i for i in range(1, len(word) - 2) if word[i] != word[i + 1]]
        if spots:
            i = rng.choice(spots)
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1:]


_GLUE_BEFORE = re.compile(r"[A-Za-z][ \t]+$")
_GLUE_AFTER = re.compile(r"^[ \t]+[A-Za-z]")


def _join(text: str, targets: set[str], rng: random.Random) -> str:
    """Each target word glued to the word before it ("youidiot"), or to the word after it when none is
    before; a word with no word beside it gets a typo instead."""
    out, last = [], 0
    for m in _WORD.finditer(text):
        if m.group(0).lower() not in targets or len(m.group(0)) < 2:
            continue
        before = _GLUE_BEFORE.search(text, max(last - 1, 0), m.start())  # a word glued just before counts
        after = _GLUE_AFTER.match(text[m.end():])
        if before:
            out += [text[last:max(before.start() + 1, last)], m.group(0)]
            last = m.end()
        elif after:
            out += [text[last:m.start()], m.group(0)]
            last = m.end() + after.end() - 1
        else:
            out += [text[last:m.start()], _typo(m.group(0), rng)]
            last = m.end()
    return "".join(out) + text[last:]


_OBFUSCATORS = {"spacing": _space, "leet": _leet, "homoglyph": _homoglyph, "typo": _typo}


def obfuscate(text: str, how: str, seed: int = 0, words: list[str] | None = None) -> str:
    """The text with some of its words obfuscated `how` (one of OBFUSCATIONS), the rest untouched:

    - spacing: letters split by a space, dot, hyphen, underscore or asterisk ("i d i o t", "s.t.u.p.i.d");
    - leet: letters replaced by look-alike digits and symbols ("1d10t", "5tup!d") or vowels masked ("f*ck");
    - homoglyph: letters replaced by look-alike Cyrillic, Greek or Armenian ones;
    - typo: two neighbouring letters swapped or one left out ("idoit", "idot"), the first letter kept;
    - joined: the word glued to its neighbour, the space between them left out ("youidiot").

    Which words: `words` (matched as whole words, ignoring case), or by default those of TOXIC_WORDS in
    the text, or when it has none, every word of four letters or more. Every chosen word of two letters
    or more comes out changed (joined: glued to a neighbour, or with a typo when it has none).
    Deterministic: the same text, `how` and `seed` give the same output."""
    if how not in OBFUSCATIONS:
        raise ValueError(f"unknown obfuscation {how!r}; choose from {', '.join(OBFUSCATIONS)}")
    if words is None:
        targets = {w.lower() for w in toxic_words(text)} or {
            m.group(0).lower() for m in _WORD.finditer(text) if len(m.group(0)) >= 4}
    else:
        targets = {w.lower() for item in words for w in _WORD.findall(item)}
    rng = random.Random(f"{how}|{seed}|{text}")
    if how == "joined":
        return _join(text, targets, rng)
    change = _OBFUSCATORS[how]

    def replace(m: re.Match[str]) -> str:
        word = m.group(0)
        if word.lower() not in targets or len(word) < 2:
            return word
        for _ in range(20):  # no abusive word may stay readable in what is left ("dumb" of "dumb@s$")
            changed = change(word, rng)
            if not any(w.lower() in TOXIC_WORDS for w in _WORD.findall(changed)):
                break
        return changed

    return _WORD.sub(replace, text)


def normalized(text: str) -> str:
    """NFKC, as the classifier reads a text (moderator.classify): what an obfuscation must survive."""
    return unicodedata.normalize("NFKC", text)

