"""Free-text feedback the simulated customers write, in Japanese and English.

Angry comments are about the customer's own recurring problem (a late parcel, a wrong bill,
a broken item, an app that fails, a hotline nobody answers), so a journey reads as one story.
"""

from __future__ import annotations

from typing import Final

# The problems a drifting customer keeps running into; also the ``reason`` of their support
# contacts, so "repeated support calls about the same reason" shows up in the data.
PROBLEMS: Final = ("delivery_delay", "billing_error", "defective_item", "app_trouble", "long_wait")

# Reasons of routine, one-off contacts.
ROUTINE_REASONS: Final = ("order_status", "product_question", "address_change", "points_balance")

ANGRY: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "ja": {
        "delivery_delay": (
            "配達が遅れて最悪でした。",
            "また配達が遅すぎる。本当に不満です。",
            "予定日に届かず、とても困っています。",
        ),
        "billing_error": (
            "請求金額が間違っていて、とても不満です。",
            "二重に請求されました。最悪です。",
        ),
        "defective_item": (
            "届いた商品が壊れていました。がっかりです。",
            "また壊れた商品が届きました。がっかりです。",
        ),
        "app_trouble": (
            "アプリが落ちて、とても不便です。",
            "ログインできないアプリにがっかりです。",
        ),
        "long_wait": (
            "待ち時間が長すぎて不満です。",
            "何度電話しても同じ説明ばかりで、問題が全く解決しません。",
            "サポートの対応がひどすぎる。もう二度と利用しません。",
        ),
    },
    "en": {
        "delivery_delay": (
            "My order arrived three days late and nobody told me. Terrible service.",
            "Late again. This is the third delayed parcel, awful.",
        ),
        "billing_error": (
            "I was charged twice and nobody can explain why. Awful.",
            "Wrong amount on my bill again. Very disappointed.",
        ),
        "defective_item": (
            "The item was broken when it arrived. Very disappointed.",
            "Another defective product. Terrible quality.",
        ),
        "app_trouble": (
            "The app keeps crashing at checkout. Frustrating and slow.",
            "Cannot log in to the app for days. Horrible experience.",
        ),
        "long_wait": (
            "Waited forty minutes on hold and then got cut off. Horrible experience.",
            "I have called four times about the same problem and it is still not fixed.",
            "Support was rude and useless. I will not shop here again.",
        ),
    },
}

HAPPY: Final[dict[str, tuple[str, ...]]] = {
    "ja": (
        "配送がとても早くて、梱包も丁寧でした。ありがとうございます！",
        "スタッフの方がとても親切で、気持ちよく買い物できました。",
        "アプリが使いやすくて、いつも助かっています。",
        "品質が良くて大満足です。また利用します。",
        "問い合わせへの対応が迅速で丁寧でした。素晴らしいです。",
    ),
    "en": (
        "Fast delivery and lovely packaging. Thank you!",
        "The staff were really helpful and friendly. Great experience.",
        "Love the app, checkout is quick and easy.",
        "Excellent quality, I will definitely buy again.",
        "Support solved my issue in minutes. Fantastic service.",
    ),
}

PLAIN: Final[dict[str, tuple[str, ...]]] = {
    "ja": ("普通です。", "商品は説明どおりでした。"),
    "en": ("The product is as described.", "Delivery was on the expected day."),
}


def language_of(locale: str) -> str:
    return "ja" if locale.startswith("ja") else "en"
