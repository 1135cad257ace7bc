"""Generate the receipt-bundle golden vectors, ``docs/vectors/bundle-v1.json``.

Run from the repository root::

    .venv/bin/python tests/ledger/gen_bundle_vectors.py

Three implementations run the file: the Python verifier
(``tests/ledger/test_bundle_vectors.py``), the ``openssl`` CLI for every digest
and signature (``tests/ledger/test_openssl_interop.py``) and the browser's
``web/src/verify.js`` under Node (``web/test/verify.test.mjs``, run by
``tests/web/test_verify_js.py``). What the file holds:

* ``sm3``: inputs and digests (the GB/T 32905 examples, UTF-8 text with CJK and
  characters outside the BMP), digests by ``cryptography`` (OpenSSL), not by the
  code under test;
* ``canonicalization``: JSON text as a server may send it and its RFC 8785 bytes
  (by the ``rfc8785`` package), including name ordering by UTF-16 code units;
* ``key_ids``: public keys, their DER SubjectPublicKeyInfo and key id;
* ``sm2``: public key, distinguishing id, message, signature (DER and raw r‖s)
  and whether it verifies (the same signature under another id does not);
* ``merkle``: leaf and interior-node hashes, inclusion proofs;
* ``statements``: the promise-batch and checkpoint statements' signed bytes;
* ``bundles``: a complete bundle, the chain's JSON-RPC answers for it, variants
  that verify and tampered ones, each with the step at which it must fail
  (``format``: not a well-formed v1 bundle, refused before any step).

Keys and signatures are fresh on every run (SM2 signing is randomised): the
committed file is the vector set; regenerate it only when the set changes.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes

from ledger.checkpoint import sign_checkpoint, sign_promise_batch
from ledger.merkle import InMemoryTree, leaf_hash, node_hash
from ledger.records import SignedRecord, sign_record
from ledger.sm2 import SM2PrivateKey

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "vectors" / "bundle-v1.json"

CHAIN_ID = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER_REGISTRY = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
ANCHORER = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
SELECTOR_ANCHOR_RECORD = "0x6822d1b2"
TOPIC_ANCHORED = "0xcec994ba8f153d88e0f019e19b80695550c3427c7ff2a824fb181fa74b14b7cb"
T0 = 1_765_000_000_000
ANCHOR_BLOCK = 41
HEAD = 43  # 3 confirmations
TX_HASH = "0x" + "5a" * 32


def sm3_digest(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def raw_signature(der: bytes) -> bytes:
    """r ‖ s (2 × 32 bytes) of a DER ``SEQUENCE {INTEGER r, INTEGER s}``."""
    assert der[0] == 0x30
    at = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[at] == 0x02
        length = der[at + 1]
        out += der[at + 2 : at + 2 + length].lstrip(b"\0").rjust(32, b"\0")
        at += 2 + length
    return out


def non_minimal_der(der: bytes) -> bytes:
    """The same (r, s) with r's INTEGER given a superfluous leading zero byte: BER, not DER."""
    assert der[0] == 0x30 and der[1] < 0x7F and der[2] == 0x02
    r_len = der[3]
    return bytes([0x30, der[1] + 1, 0x02, r_len + 1, 0]) + der[4:]


# --------------------------------------------------------------------------- primitives


def sm3_cases() -> list[dict[str, Any]]:
    inputs = [
        ("empty", b""),
        ("GB/T 32905 example 1: abc", b"abc"),
        ("GB/T 32905 example 2: abcd × 16", b"abcd" * 16),
        ("UTF-8 text with CJK, U+1F600 and U+F0000", "山城数据 😀 \U000f0000 receipt".encode()),
        ("every byte value", bytes(range(256))),
    ]
    cases = [
        {"desc": name, "input_hex": data.hex(), "digest": sm3_digest(data).hex()}
        for name, data in inputs
    ]
    assert cases[1]["digest"] == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert cases[2]["digest"] == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    return cases


CANONICAL_INPUTS = [
    ("whitespace and member order", '{ "b" : 2 ,\n  "a" : [ true , false , null ] }'),
    ("nested objects sorted at every level", '{"z":{"b":1,"a":{"d":[],"c":{}}},"a":"x"}'),
    ("names sorted by UTF-16 code units, not code points", '{"\ue000":1,"😀":2,"é":3,"z":4}'),
    (
        "escapes the server may use become raw UTF-8",
        '{"s":"\\u5c71\\u57ce \\ud83d\\ude00 \\u00e9"}',
    ),
    ("the escapes RFC 8785 keeps", '{"s":"q\\" b\\\\ \\b\\f\\n\\r\\t \\u0001 \\u001f"}'),
    ("characters RFC 8785 does not escape", '{"s":"/ \\u007f \\u2028 \\u2029 </script>"}'),
    ("integers", '{"n":[0,-0,1,-1,9007199254740991,-9007199254740991,19900]}'),
    ("a record", '{"type":"order.placed","schema_version":1,"payload":{"amount_fen":19900}}'),
]


def canonical_cases() -> list[dict[str, Any]]:
    out = []
    for name, text in CANONICAL_INPUTS:
        canonical = bytes(rfc8785.dumps(json.loads(text)))
        out.append(
            {
                "desc": name,
                "json": text,
                "canonical": canonical.decode("utf-8"),
                "canonical_hex": canonical.hex(),
            }
        )
    return out


def key_id_case(key: SM2PrivateKey) -> dict[str, Any]:
    public = key.public_key()
    der = public.to_der()
    assert sm3_digest(der).hex() == public.key_id()
    return {
        "public_key_pem": public.to_pem().decode("ascii"),
        "spki_der_hex": der.hex(),
        "key_id": public.key_id(),
    }


def sm2_cases(key: SM2PrivateKey, record: SignedRecord) -> list[dict[str, Any]]:
    pem = key.public_key().to_pem().decode("ascii")
    message = "山城 SM2 vector 😀".encode()
    default = key.sign(message)
    empty_id = key.sign(message, distid=b"")
    other_id = key.sign(message, distid=b"ALICE123@YAHOO.COM")

    def case(name: str, msg: bytes, der: bytes, distid: str, valid: bool) -> dict[str, Any]:
        return {
            "desc": name,
            "public_key_pem": pem,
            "id": distid,
            "message_hex": msg.hex(),
            "signature_der_hex": der.hex(),
            "signature_raw_hex": raw_signature(der).hex(),
            "valid": valid,
        }

    return [
        case("default id 1234567812345678", message, default, "1234567812345678", True),
        case(
            "the record's signature over its RFC 8785 bytes",
            record.record.canonical_bytes(),
            record.signature,
            "1234567812345678",
            True,
        ),
        case(
            "signed with the empty id (OpenSSL 3.0's default), checked with the default id",
            message,
            empty_id,
            "1234567812345678",
            False,
        ),
        case("signed with the empty id, checked with it", message, empty_id, "", True),
        case("another id", message, other_id, "ALICE123@YAHOO.COM", True),
        case(
            "default-id signature checked with another id",
            message,
            default,
            "ALICE123@YAHOO.COM",
            False,
        ),
        case(
            "message changed by one byte", message[:-1] + b"!", default, "1234567812345678", False
        ),
    ]


# --------------------------------------------------------------------------- the log and the bundle


class Story:
    """Five entries: 0 alone, 1-3 one append batch, 4 alone; a checkpoint at 5."""

    def __init__(self) -> None:
        self.log_key = SM2PrivateKey.generate()
        self.alice = SM2PrivateKey.generate()
        self.bob = SM2PrivateKey.generate()
        self.impostor = SM2PrivateKey.generate()
        payloads: list[tuple[str, SM2PrivateKey, dict[str, Any]]] = [
            ("listing.published", self.alice, {"listing_id": "lst_0", "price_fen": 990}),
            (
                "order.placed",
                self.bob,
                {"order_id": "ord_1", "listing_id": "lst_0", "amount_fen": 19900},
            ),
            (
                "note.added",
                self.alice,
                {
                    "text": '山城 "quoted" \\ back\u2028slash \u0001 😀 \U000f0000',
                    "\ue000": "private use",
                    "😀": "astral name",
                    "é": 1,
                    "z": [0, -1, None, True],
                    "max": 9007199254740991,
                    "min": -9007199254740991,
                },
            ),
            (
                "order.placed",
                self.bob,
                {"order_id": "ord_3", "listing_id": "lst_0", "amount_fen": 100},
            ),
            ("note.added", self.bob, {"text": "last"}),
        ]
        self.keys = [k for _, k, _ in payloads]
        self.records = [
            sign_record(k, t, p, timestamp=T0 + i * 1000) for i, (t, k, p) in enumerate(payloads)
        ]
        leaves = [r.leaf_hash() for r in self.records]
        self.promises = []
        for first, size, ts in ((0, 1, T0 + 40), (1, 3, T0 + 3042), (4, 1, T0 + 4042)):
            _, batch = sign_promise_batch(self.log_key, first, leaves[first : first + size], ts)
            self.promises.extend(batch)
        self.tree = InMemoryTree(leaves)
        self.size = len(leaves)
        # A 71-byte DER signature: its base64 ends in one "=" (the padding cases need it).
        while True:
            self.checkpoint = sign_checkpoint(
                self.log_key, self.size, self.tree.root(self.size), T0 + 5000
            )
            if len(self.checkpoint.signature) == 71:
                break

    def bundle(self, index: int) -> dict[str, Any]:
        return {
            "version": 1,
            "record": self.records[index].to_dict(),
            "actor_public_key": self.keys[index].public_key().to_pem().decode("ascii"),
            "promise": self.promises[index].to_dict(),
            "log_public_key": self.log_key.public_key().to_pem().decode("ascii"),
            "inclusion": {
                "index": index,
                "tree_size": self.size,
                "hashes": [h.hex() for h in self.tree.inclusion_proof(index, self.size)],
            },
            "checkpoint": self.checkpoint.to_dict(),
            "anchor": {
                "chain_id": CHAIN_ID,
                "registry_address": REGISTRY,
                "tx_hash": TX_HASH,
                "block_number": ANCHOR_BLOCK,
            },
        }


def word(n: int) -> str:
    return f"{n:064x}"


def rpc_answers(
    tree_size: int,
    root: str | None,
    *,
    chain_id: int = CHAIN_ID,
    registry: str = REGISTRY,
    head: int = HEAD,
    code: bool = True,
    events: bool = True,
) -> list[dict[str, Any]]:
    """The JSON-RPC calls a verifier makes for ``chain_anchor`` and the node's answers.

    ``root`` None: nothing anchored for ``tree_size`` (anchorRecord answers zeros)."""
    address = registry.lower()
    if not code:
        stored = "0x"
    elif root is None:
        stored = "0x" + "0" * 192
    else:
        stored = "0x" + root + word(T0 // 1000 + 7) + word(int(ANCHORER, 16))
    logs = []
    if root is not None and events:
        logs.append(
            {
                "address": address,
                "topics": [TOPIC_ANCHORED, "0x" + word(tree_size), "0x" + word(int(ANCHORER, 16))],
                "data": "0x" + root + word(T0 // 1000 + 7),
                "blockNumber": hex(ANCHOR_BLOCK),
                "transactionHash": TX_HASH,
                "transactionIndex": "0x0",
                "blockHash": "0x" + "b1" * 32,
                "logIndex": "0x0",
                "removed": False,
            }
        )
    return [
        {"method": "eth_chainId", "params": [], "result": hex(chain_id)},
        {
            "method": "eth_call",
            "params": [
                {"to": address, "data": SELECTOR_ANCHOR_RECORD + word(tree_size)},
                "latest",
            ],
            "result": stored,
        },
        {
            "method": "eth_getLogs",
            "params": [
                {
                    "address": address,
                    "fromBlock": "0x0",
                    "toBlock": "latest",
                    "topics": [TOPIC_ANCHORED, "0x" + word(tree_size)],
                }
            ],
            "result": logs,
        },
        {"method": "eth_blockNumber", "params": [], "result": hex(head)},
    ]


Edit = Callable[[dict[str, Any]], None]


def bundle_cases(story: Story) -> list[dict[str, Any]]:
    base = story.bundle(2)
    root = story.checkpoint.root.hex()
    size = story.size
    chain = rpc_answers(size, root)
    log_pem = base["log_public_key"]
    impostor_pem = story.impostor.public_key().to_pem().decode("ascii")
    other = story.records[0]  # validly signed by alice too
    cases: list[dict[str, Any]] = []

    def add(
        name: str,
        edit: Edit | None,
        verdict: str,
        step: str | None,
        *,
        rpc: list[dict[str, Any]] | None = None,
        options: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
        inconclusive: bool = False,
    ) -> None:
        bundle = copy.deepcopy(source or base)
        if edit is not None:
            edit(bundle)
        cases.append(
            {
                "desc": name,
                "bundle": bundle,
                "options": {
                    "registry_address": REGISTRY,
                    "min_confirmations": 1,
                    **(options or {}),
                },
                "rpc": rpc if rpc is not None else chain,
                "expect": {
                    "verdict": verdict,
                    "failed_step": step,
                    "inconclusive": inconclusive,
                },
            }
        )

    def flip(hex_text: str) -> str:
        return ("0" if hex_text[0] != "0" else "1") + hex_text[1:]

    def set_path(path: str, value: Any) -> Edit:
        def edit(b: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            node = b
            for p in parents:
                node = node[p]
            node[last] = value(node[last]) if callable(value) else value

        return edit

    # -- verified
    add("complete bundle: entry 2, in a batch of three", None, "verified", None)
    add(
        "entry 0, alone in its batch (empty batch proof)",
        None,
        "verified",
        None,
        source=story.bundle(0),
    )
    add("entry 4, the last leaf", None, "verified", None, source=story.bundle(4))
    add(
        "the registry address in another case",
        set_path("anchor.registry_address", str.lower),
        "verified",
        None,
    )
    add(
        "another tx hash and block (informational only)",
        lambda b: b["anchor"].update(tx_hash="0x" + "77" * 32, block_number=7),
        "verified",
        None,
    )
    add(
        "the pinned log key is the bundle's",
        None,
        "verified",
        None,
        options={"trusted_log_key": log_pem},
    )
    add(
        "exactly the required confirmations",
        None,
        "verified",
        None,
        options={"min_confirmations": 3},
    )

    # -- actor_signature
    add("payload value edited", set_path("record.record.payload.é", 2), "failed", "actor_signature")
    add(
        "record timestamp edited",
        set_path("record.record.timestamp", lambda t: t + 1),
        "failed",
        "actor_signature",
    )
    add(
        "signature of another record by the same actor",
        set_path("record.signature", b64(other.signature)),
        "failed",
        "actor_signature",
    )
    add(
        "actor public key swapped for another key",
        set_path("actor_public_key", impostor_pem),
        "failed",
        "actor_signature",
    )

    def impostor_actor(b: dict[str, Any]) -> None:
        b["actor_public_key"] = impostor_pem
        b["record"]["record"]["actor"] = story.impostor.key_id()

    add("actor and key both swapped for an impostor's", impostor_actor, "failed", "actor_signature")
    empty_id = story.alice.sign(story.records[2].record.canonical_bytes(), distid=b"")
    add(
        "record signed with the empty distinguishing id",
        set_path("record.signature", b64(empty_id)),
        "failed",
        "actor_signature",
    )
    add(
        "record signature as raw r‖s instead of DER",
        set_path("record.signature", b64(raw_signature(story.records[2].signature))),
        "failed",
        "actor_signature",
    )

    record_sig = story.records[2].signature
    add(
        "record signature in non-minimal DER (a zero byte prepended to r)",
        set_path("record.signature", b64(non_minimal_der(record_sig))),
        "failed",
        "actor_signature",
    )
    add(
        "record signature with a byte after the DER sequence",
        set_path("record.signature", b64(record_sig + b"\x00")),
        "failed",
        "actor_signature",
    )

    # -- leaf_hash
    add("promise leaf hash edited", set_path("promise.leaf_hash", flip), "failed", "leaf_hash")
    add(
        "record replaced by another validly signed record (same actor)",
        lambda b: b.update(record=other.to_dict()),
        "failed",
        "leaf_hash",
    )
    add(
        "promise index moved within its batch",
        set_path("promise.index", lambda i: i + 1),
        "failed",
        "leaf_hash",
    )
    add(
        "promise index outside its batch",
        set_path("promise.index", lambda i: i + 5),
        "failed",
        "leaf_hash",
    )
    add(
        "batch proof node flipped",
        lambda b: b["promise"]["batch_proof"].__setitem__(0, flip(b["promise"]["batch_proof"][0])),
        "failed",
        "leaf_hash",
    )
    add("batch proof truncated", lambda b: b["promise"]["batch_proof"].pop(), "failed", "leaf_hash")
    add(
        "promise timestamp edited",
        set_path("promise.timestamp", lambda t: t + 1),
        "failed",
        "leaf_hash",
    )
    add(
        "promise batch_first_index edited",
        set_path("promise.batch_first_index", lambda i: i - 1),
        "failed",
        "leaf_hash",
    )
    add(
        "promise batch_size edited",
        set_path("promise.batch_size", lambda i: i + 1),
        "failed",
        "leaf_hash",
    )
    add(
        "promise names another log key",
        set_path("promise.log_key_id", story.alice.key_id()),
        "failed",
        "leaf_hash",
    )
    add(
        "promise signature replaced by the checkpoint's (kind separation)",
        set_path("promise.signature", base["checkpoint"]["signature"]),
        "failed",
        "leaf_hash",
    )
    add(
        "inclusion index differs from the promise's",
        set_path("inclusion.index", lambda i: i + 1),
        "failed",
        "leaf_hash",
    )
    add("log public key swapped", set_path("log_public_key", impostor_pem), "failed", "leaf_hash")

    # -- inclusion
    add(
        "inclusion tree size differs from the checkpoint's",
        set_path("inclusion.tree_size", lambda n: n + 1),
        "failed",
        "inclusion",
    )
    add(
        "inclusion proof node flipped",
        lambda b: b["inclusion"]["hashes"].__setitem__(0, flip(b["inclusion"]["hashes"][0])),
        "failed",
        "inclusion",
    )
    add(
        "inclusion proof reordered",
        lambda b: b["inclusion"]["hashes"].reverse(),
        "failed",
        "inclusion",
    )
    add(
        "inclusion proof extended",
        lambda b: b["inclusion"]["hashes"].append("00" * 32),
        "failed",
        "inclusion",
    )
    add("checkpoint root edited", set_path("checkpoint.root", flip), "failed", "inclusion")

    # -- checkpoint_signature
    add(
        "checkpoint timestamp edited",
        set_path("checkpoint.timestamp", lambda t: t + 1),
        "failed",
        "checkpoint_signature",
    )
    add(
        "checkpoint signature replaced by the promise's (kind separation)",
        set_path("checkpoint.signature", base["promise"]["signature"]),
        "failed",
        "checkpoint_signature",
    )
    add(
        "checkpoint names another log key",
        set_path("checkpoint.log_key_id", story.alice.key_id()),
        "failed",
        "checkpoint_signature",
    )
    forged = forged_log(story)
    add(
        "a consistent bundle re-signed by another log key, that key not the pinned one",
        None,
        "failed",
        "checkpoint_signature",
        source=forged,
        options={"trusted_log_key": log_pem},
    )

    # -- chain_anchor
    add(
        "the bundle names another registry than the pinned one",
        set_path("anchor.registry_address", OTHER_REGISTRY),
        "failed",
        "chain_anchor",
    )
    add(
        "the RPC endpoint serves another chain",
        None,
        "failed",
        "chain_anchor",
        rpc=rpc_answers(size, root, chain_id=1),
    )
    add("the bundle names another chain", set_path("anchor.chain_id", 1), "failed", "chain_anchor")
    add(
        "the tree size is not anchored", None, "failed", "chain_anchor", rpc=rpc_answers(size, None)
    )
    add(
        "another root is anchored for the tree size",
        None,
        "failed",
        "chain_anchor",
        rpc=rpc_answers(size, flip(root)),
    )
    add(
        "no contract at the registry address",
        None,
        "failed",
        "chain_anchor",
        rpc=rpc_answers(size, root, code=False),
    )
    add(
        "fewer confirmations than required",
        None,
        "failed",
        "chain_anchor",
        options={"min_confirmations": 4},
    )
    add(
        "stored but the node serves no Anchored event (inconclusive)",
        None,
        "failed",
        "chain_anchor",
        rpc=rpc_answers(size, root, events=False),
        inconclusive=True,
    )
    return cases


def forged_log(story: Story) -> dict[str, Any]:
    """Entry 2's bundle with promise and checkpoint re-signed by the impostor's key."""
    forger = story.impostor
    leaves = [r.leaf_hash() for r in story.records]
    _, batch = sign_promise_batch(forger, 1, leaves[1:4], T0 + 3042)
    checkpoint = sign_checkpoint(forger, story.size, story.tree.root(story.size), T0 + 5000)
    bundle = story.bundle(2)
    bundle["promise"] = batch[1].to_dict()
    bundle["log_public_key"] = forger.public_key().to_pem().decode("ascii")
    bundle["checkpoint"] = checkpoint.to_dict()
    return bundle


def malformed_cases(story: Story) -> list[dict[str, Any]]:
    """Bundles given as JSON *text* (a float or a duplicate name cannot be written as
    a parsed object) that a verifier must refuse before any step."""
    base = story.bundle(2)
    text = json.dumps(base, ensure_ascii=False, indent=1)
    amount_text = json.dumps(story.bundle(1), ensure_ascii=False, indent=1)
    pem = base["actor_public_key"]
    cases = []

    def add(name: str, bad: str) -> None:
        assert bad != text and bad != amount_text, name
        cases.append(
            {
                "desc": name,
                "bundle_text": bad,
                "options": {"registry_address": REGISTRY, "min_confirmations": 1},
                "rpc": [],
                "expect": {"verdict": "failed", "failed_step": "format", "inconclusive": False},
            }
        )

    def edited(edit: Edit) -> str:
        b = copy.deepcopy(base)
        edit(b)
        return json.dumps(b, ensure_ascii=False)

    add("version 2", edited(lambda b: b.update(version=2)))
    add("version as a string", edited(lambda b: b.update(version="1")))
    add(
        "a float in the payload",
        amount_text.replace('"amount_fen": 19900', '"amount_fen": 19900.0'),
    )
    add(
        "an exponent in the payload",
        amount_text.replace('"amount_fen": 19900', '"amount_fen": 1.99e4'),
    )
    add(
        "an integer beyond 2^53 - 1",
        edited(lambda b: b["promise"].update(index=9007199254740991)).replace(
            "9007199254740991", "9007199254740992"
        ),
    )
    add("a negative index", edited(lambda b: b["inclusion"].update(index=-1)))
    add("a boolean for an integer", edited(lambda b: b["checkpoint"].update(tree_size=True)))
    add("a duplicate name", text.replace('"version": 1,', '"version": 1,\n "version": 1,', 1))
    add("an unknown field", edited(lambda b: b.update(extra=1)))
    add("a missing field", edited(lambda b: b.pop("anchor")))
    add(
        "uppercase hex in a hash",
        edited(lambda b: b["promise"].update(leaf_hash=b["promise"]["leaf_hash"].upper())),
    )
    add(
        "a proof node of 31 bytes",
        edited(lambda b: b["inclusion"]["hashes"].__setitem__(0, "00" * 31)),
    )
    add(
        "base64 without padding",
        edited(lambda b: b["checkpoint"].update(signature=b["checkpoint"]["signature"][:-1])),
    )
    sig = base64.b64decode(base["checkpoint"]["signature"])
    add(
        "base64 with non-zero pad bits",
        edited(lambda b: b["checkpoint"].update(signature=noncanonical_b64(sig))),
    )
    add("a lone surrogate in the payload", text.replace('"text": "', '"text": "\\ud800', 1))
    add("text after the PEM block", edited(lambda b: b.update(actor_public_key=pem + "junk\n")))
    add(
        "a PEM of another label",
        edited(lambda b: b.update(actor_public_key=pem.replace("PUBLIC KEY", "EC PUBLIC KEY"))),
    )
    add(
        "a malformed registry address",
        edited(lambda b: b["anchor"].update(registry_address=REGISTRY[:-1])),
    )
    add(
        "a record type that is not dotted words",
        edited(lambda b: b["record"]["record"].update(type="Order")),
    )
    add("not JSON", text[:-2])
    add("a JSON array", "[" + text + "]")
    return cases


def noncanonical_b64(data: bytes) -> str:
    """Base64 of ``data`` with its unused pad bits set (decodes to the same bytes)."""
    text = base64.b64encode(data).decode("ascii")
    assert text.endswith("=") and not text.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-2])
    assert last & 0b11 == 0
    return text[:-2] + alphabet[last | 1] + "="


def merkle_section(story: Story) -> dict[str, Any]:
    datas = [r.leaf_bytes() for r in story.records]
    leaves = [leaf_hash(d) for d in datas]
    assert leaves[0] == sm3_digest(b"\x00" + datas[0])
    n01 = node_hash(leaves[0], leaves[1])
    assert n01 == sm3_digest(b"\x01" + leaves[0] + leaves[1])
    size = story.size
    root = story.tree.root(size)
    return {
        "leaves": [
            {"data_utf8": d.decode("utf-8"), "leaf_hash": h.hex()}
            for d, h in zip(datas, leaves, strict=True)
        ],
        "nodes": [{"left": leaves[0].hex(), "right": leaves[1].hex(), "hash": n01.hex()}],
        "tree_size": size,
        "root": root.hex(),
        "inclusion": [
            {
                "index": i,
                "tree_size": size,
                "leaf_hash": leaves[i].hex(),
                "proof": [h.hex() for h in story.tree.inclusion_proof(i, size)],
                "root": root.hex(),
            }
            for i in range(size)
        ],
    }


def statements(story: Story) -> list[dict[str, Any]]:
    promise = story.promises[2]
    statement = promise.statement()
    cp = story.checkpoint
    log_pem = story.log_key.public_key().to_pem().decode("ascii")
    return [
        {
            "kind": "shancheng.promise-batch.v1",
            "from_promise": promise.to_dict(),
            "batch_root": statement.batch_root.hex(),
            "signed_bytes": promise.signed_bytes().decode("utf-8"),
            "signature_der_hex": promise.signature.hex(),
            "log_public_key": log_pem,
        },
        {
            "kind": "shancheng.checkpoint.v1",
            "from_checkpoint": cp.to_dict(),
            "signed_bytes": cp.signed_bytes().decode("utf-8"),
            "signature_der_hex": cp.signature.hex(),
            "log_public_key": log_pem,
        },
    ]


def main() -> None:
    story = Story()
    vectors = {
        "comment": (
            "Golden vectors of docs/bundle-v1.md. The Python verifier, the openssl CLI and "
            "web/src/verify.js (Node) all run them. Bundles: expect.failed_step is the step at "
            "which verification must stop (format = refused before any step, as not a v1 "
            "bundle); options.registry_address is the pinned registry; rpc lists the JSON-RPC "
            "calls (method, params) a verifier makes for chain_anchor and the node's answers."
        ),
        "generator": "tests/ledger/gen_bundle_vectors.py",
        "sm2_default_id": "1234567812345678",
        "selectors": {
            "anchorRecord(uint64)": SELECTOR_ANCHOR_RECORD,
            "Anchored(uint64,bytes32,address,uint64)": TOPIC_ANCHORED,
        },
        "sm3": sm3_cases(),
        "canonicalization": canonical_cases(),
        "key_ids": [key_id_case(k) for k in (story.alice, story.log_key)],
        "sm2": sm2_cases(story.alice, story.records[2]),
        "merkle": merkle_section(story),
        "statements": statements(story),
        "bundles": bundle_cases(story) + malformed_cases(story),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(vectors, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(vectors['bundles'])} bundle cases")


if __name__ == "__main__":
    main()
