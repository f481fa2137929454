"""Plausible, deterministic Chinese residents for demo data and benchmarks."""

from __future__ import annotations

import random
from datetime import date, timedelta

from models.validators import id_number_checksum

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉晨阳宇浩然欣怡梓涵子轩"
PLACES = ["北京市朝阳区", "上海市浦东新区", "广东省深圳市", "四川省成都市", "湖北省武汉市", "江苏省南京市",
          "浙江省杭州市", "湖南省长沙市", "陕西省西安市", "山东省济南市"]
REGIONS = ["110105", "310115", "440304", "510104", "420106", "320102", "330106", "430102", "610113", "370102"]


def make_id_number(rng: random.Random, serial: int) -> str:
    """A checksum-valid 18-digit number; ``serial`` keeps numbers unique within one run."""
    born = date(1950, 1, 1) + timedelta(days=rng.randrange(0, 365 * 55))
    first17 = f"{rng.choice(REGIONS)}{born:%Y%m%d}{serial % 1000:03d}"
    return first17 + id_number_checksum(first17)


def make_person(rng: random.Random, serial: int) -> dict[str, str]:
    idx = rng.randrange(len(PLACES))
    region = REGIONS[idx]
    born = date(1950, 1, 1) + timedelta(days=(serial * 7919) % (365 * 55))
    seq = serial % 1000
    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    gender = "male" if seq % 2 else "female"
    return {
        "name": rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))),
        "gender": gender,
        "phone": f"1{rng.choice('3589')}{rng.randrange(10**9):09d}",
        "id_number": first17 + id_number_checksum(first17),
        "native_place": PLACES[idx],
        "household_place": PLACES[idx],
    }
