"""Token positions of an edit concept from a CLIP tokenizer's chunks."""

CHUNK_LENGTH = 77


def concept_token_positions(chunks, chunk_length=CHUNK_LENGTH):
    """Positions of the concept's own tokens in the concatenated context.

    `chunks` is a list of 77-token chunks of (token, weight, word_id) as ComfyUI's
    `tokenize_with_weights(..., return_word_ids=True)` returns them; word_id 0 marks BOS, EOS and
    padding, so only the text's tokens (1 .. n in each chunk) are kept. Long prompts give several
    chunks, and their positions are offset by 77 per chunk, matching the concatenated conditioning.
    """
    positions = []
    for c, chunk in enumerate(chunks):
        if len(chunk) != chunk_length:
            raise ValueError(f"token chunk {c} has {len(chunk)} tokens, expected {chunk_length}")
        positions.extend(c * chunk_length + j for j, item in enumerate(chunk) if item[2] != 0)
    if not positions:
        raise ValueError("the concept text has no tokens; enter a word or phrase to edit with")
    return positions
