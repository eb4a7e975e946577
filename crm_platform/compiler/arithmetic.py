"""Arithmetic for compiled expressions.

Empty (``None``) in, empty out; money stays exact: when a ``Decimal`` meets a
float, the float is converted, so ``amount * probability / 100`` never mixes
binary floats into a currency amount. Division by zero gives empty, not a
crash in the middle of an automation.
"""

from __future__ import annotations

from decimal import Decimal


def _exact(a, b):
    if isinstance(a, Decimal) and isinstance(b, float):
        return a, Decimal(repr(b))
    if isinstance(b, Decimal) and isinstance(a, float):
        return Decimal(repr(a)), b
    return a, b


def add(a, b):
    if a is None or b is None:
        return None
    a, b = _exact(a, b)
    return a + b


def sub(a, b):
    if a is None or b is None:
        return None
    a, b = _exact(a, b)
    return a - b


def mul(a, b):
    if a is None or b is None:
        return None
    a, b = _exact(a, b)
    return a * b


def div(a, b):
    if a is None or b is None or b == 0:
        return None
    a, b = _exact(a, b)
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return Decimal(a) / Decimal(b)
    return a / b


def mod(a, b):
    if a is None or b is None or b == 0:
        return None
    a, b = _exact(a, b)
    return a % b


def neg(a):
    return None if a is None else -a
