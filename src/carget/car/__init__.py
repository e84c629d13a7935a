"""CAR files, sans-IO at the core: decoder (fed bytes, yields verified blocks), encoder,
CARv2 header and index, and thin blocking reader/writer over files and stdin/stdout.

Never imports trio, httpx, click or rich (a test enforces it).
"""

from .decoder import (
    CAR_END,
    DEFAULT_LIMITS,
    NEED_DATA,
    TRUSTLESS_LIMITS,
    CarDecoder,
    CarLimits,
    decode_car,
    verify_block,
)
from .header import CarHeader, CarV2Header

__all__ = [
    "CAR_END",
    "DEFAULT_LIMITS",
    "NEED_DATA",
    "TRUSTLESS_LIMITS",
    "CarDecoder",
    "CarHeader",
    "CarLimits",
    "CarV2Header",
    "decode_car",
    "verify_block",
]
