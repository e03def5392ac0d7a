"""`tinyasr evaluate`: CER and WER (with sub/del/ins) of a model on Kaldi data dirs, in total, per
TTS engine (the speaker id up to its first `_`) and, with --train-text, by seen/unseen text;
with --peer, the same rows for reference recognizers trained on real speech
(model/decoding/peers.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tinyasr.model.decoding.options import DecodeMode, DecodeOptions
from tinyasr.model.decoding.peers import PEERS
from tinyasr.model.network.pretrained_paths import DEFAULT_MODEL
from tinyasr.scripts.arguments import check_output_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="score a model on data dirs")
    parser.add_argument("data", type=Path, nargs="+", metavar="DATA_DIR")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="model directory, .tac file or whisper-tiny.en (scored on its text "
                             "lowercased without punctuation)")
    parser.add_argument("--mode", choices=[m.value for m in DecodeMode],
                        default=DecodeMode.ATTENTION_RESCORING.value)
    parser.add_argument("--train-text", type=Path, metavar="TRAIN_DIR",
                        help="also score separately the utterances whose transcript does / does "
                             "not occur in this training data dir (seen vs unseen text)")
    parser.add_argument("--peer", action="append", default=[], choices=PEERS,
                        help="also score this reference recognizer on the same data, the same "
                             "way (repeatable; pocketsphinx needs the peers extra)")
    parser.add_argument("--json", type=Path, help="also write the scores here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tinyasr.model.common.atomic import atomic_write_text
    from tinyasr.model.data.datadir import read_data_dir
    from tinyasr.model.decoding.peers import load_peer
    from tinyasr.model.decoding.recognizers import load_recognizer
    from tinyasr.model.network.tokenizer import normalize_text

    check_output_path(args.json, "--json")   # before the work, not after it
    torch.set_num_threads(1)
    peers = list(dict.fromkeys(args.peer))
    recognizer = load_recognizer(args.model, DecodeOptions(DecodeMode(args.mode)),
                                 plain_text=True)
    seen_texts = ({normalize_text(u.text) for u in read_data_dir(args.train_text)}
                  if args.train_text else None)
    data = {data_dir: read_data_dir(data_dir) for data_dir in args.data}
    scores = score(recognizer, data, seen_texts, "")
    peer_scores = {name: score(load_peer(name), data, seen_texts, f"peer={name}, ")
                   for name in peers}
    if args.json:
        record = {"model": str(args.model), "mode": args.mode, "scores": scores}
        if peers:
            record["peers"] = peer_scores
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
    return 0


def score(transcriber, data: dict, seen_texts: set[str] | None, label: str) -> dict:
    """Prints and returns the scores of `transcriber` on each data dir: all, per engine and,
    given the training texts, seen/unseen text. `label` starts each row's bracket."""
    from tinyasr.model.decoding.evaluate import engine_of, evaluate, group_counts
    from tinyasr.model.network.tokenizer import normalize_text

    scores = {}
    for data_dir, utterances in data.items():
        result = evaluate(transcriber, utterances)
        groups = {"all": utterances}
        groups.update({f"engine={engine}": [u for u in utterances if engine_of(u) == engine]
                       for engine in sorted({engine_of(u) for u in utterances})})
        if seen_texts is not None:
            groups["seen_text"] = [u for u in utterances if normalize_text(u.text) in seen_texts]
            groups["unseen_text"] = [u for u in utterances
                                     if normalize_text(u.text) not in seen_texts]
        scores[str(data_dir)] = {}
        print(f"{data_dir}: {label}RTF {result.real_time_factor:.3f}")
        for group, members in groups.items():
            cer, wer = group_counts(result, [u.uid for u in members])
            print(f"{data_dir} [{label}{group}, {len(members)} utt]: CER {cer.summary()}  "
                  f"WER {wer.summary()}")
            scores[str(data_dir)][group] = {
                "utterances": len(members), "cer": cer.rate, "wer": wer.rate,
                "cer_counts": vars(cer), "wer_counts": vars(wer)}
    return scores
