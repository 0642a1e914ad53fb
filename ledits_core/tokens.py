"""Token positions of an edit concept from a tokenizer's chunks (CLIP: 77-token chunks; T5: one
chunk of any length)."""

CHUNK_LENGTH = 77


def concept_token_positions(chunks, chunk_length=CHUNK_LENGTH):
    """Positions of the concept's own tokens in the concatenated context.

    `chunks` is a list of chunks of (token, weight, word_id) as ComfyUI's
    `tokenize_with_weights(..., return_word_ids=True)` returns them; word_id 0 marks BOS, EOS and
    padding, so only the text's tokens are kept. Long CLIP prompts give several 77-token chunks,
    and positions are offset by the length of the chunks before, matching the concatenated
    conditioning. `chunk_length` None accepts chunks of any length (T5).
    """
    positions, offset = [], 0
    for c, chunk in enumerate(chunks):
        if chunk_length is not None and len(chunk) != chunk_length:
            raise ValueError(f"token chunk {c} has {len(chunk)} tokens, expected {chunk_length}")
        positions.extend(offset + j for j, item in enumerate(chunk) if item[2] != 0)
        offset += len(chunk)
    if not positions:
        raise ValueError("the concept text has no tokens; enter a word or phrase to edit with")
    return positions
