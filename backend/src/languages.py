"""Language codes and names: Whisper's languages, ISO 639-1 codes to English names and back."""

from __future__ import annotations

# The languages Whisper knows, as in OpenAI's whisper tokenizer (code -> lower-case English name).
WHISPER_LANGUAGES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian", "mk": "macedonian",
    "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian", "ne": "nepali",
    "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer",
    "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan",
    "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi", "gu": "gujarati",
    "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek", "fo": "faroese",
    "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala",
    "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}

# Other names the OpenAI API (or a person) may use for the same languages.
_ALIASES: dict[str, str] = {
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb",
    "pushto": "ps", "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si",
    "castilian": "es", "mandarin": "zh", "farsi": "fa", "javanese": "jw", "filipino": "tl",
    "norwegian bokmal": "no", "bokmal": "no",
}

_NAME_TO_CODE: dict[str, str] = {name: code for code, name in WHISPER_LANGUAGES.items()} | _ALIASES


def language_name(code: str) -> str:
    """English display name of a language code ("es" -> "Spanish"); the code itself if unknown."""
    name = WHISPER_LANGUAGES.get(code)
    return name.title() if name else code


def to_code(value: str) -> str | None:
    """ISO code for a language name or code as an API may return it ("english", "English", "en")."""
    key = value.strip().lower().replace("_", " ")
    if key in WHISPER_LANGUAGES:
        return key
    return _NAME_TO_CODE.get(key)


def parse_language_list(value: str | list[str] | None) -> list[str] | None:
    """Candidate languages from "en,es" or ["en", "es"]; None when empty.

    Raises ValueError naming every code Whisper does not know.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    codes = [str(item).strip().lower() for item in items if str(item).strip()]
    if not codes:
        return None
    unknown = [code for code in codes if code not in WHISPER_LANGUAGES]
    if unknown:
        raise ValueError(f"unknown language code(s): {', '.join(unknown)}")
    return list(dict.fromkeys(codes))
