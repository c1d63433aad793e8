"""Closed-class English word lists for modification texts (fashion and everyday scenes).

Written by hand from general English grammar and the vocabulary of image-edit requests;
nothing here is derived from any evaluation file.
"""

from __future__ import annotations

ARTICLES = frozenset({"a", "an", "the", "this", "that", "these", "those", "some", "any"})

POSSESSIVES = frozenset({"its", "his", "her", "their", "my", "your", "our"})

# Pronouns that stand for the item itself ("it is black").
PRONOUNS = frozenset({"it", "they", "them", "he", "she", "him", "i", "we", "you", "one", "ones"})

# Adverbs and fillers that carry no attribute at the start of a chunk.
LEAD_FILLERS = frozenset(
    {
        "also", "just", "only", "really", "very", "much", "quite", "slightly", "somewhat",
        "please", "instead", "now", "rather", "too", "so", "then", "still", "even", "both",
        "all", "overall", "mostly", "mainly", "definitely", "clearly", "there", "here",
        "desired", "target", "item", "which", "who", "that", "one", "to", "a", "bit", "lot",
        "little", "of", "in", "general", "well", "as", "similar", "but", "ok", "okay",
        "alright", "yes", "yeah", "um", "hmm",
    }
)

# Words that carry nothing at the end of a chunk ("is black only").
TRAIL_FILLERS = frozenset(
    {"only", "too", "instead", "also", "now", "though", "please", "overall", "etc", "one",
     "ones", "there", "here", "as", "well", "so", "either"}
)

# Objects of a trailing preposition that only point back at the item ("on it", "in color").
TRAIL_OBJECTS = frozenset({"it", "them", "this", "that", "color", "colour", "colors", "colours",
                           "general", "tone", "shade", "image", "picture"})

# Words at which one request ends and the next begins.
SPLITTERS = frozenset({"and", "with", "w", "but", "plus", "while", "whereas", "although", "though",
                       "yet", "&"})

# Words ignored when deciding whether two phrases say the same thing.
GLUE = frozenset({"a", "an", "the", "and", "is", "are", "with", "of", "it", "its", "has", "have",
                  "in", "to", "be", "that", "this", "more", "very", "much", "looks", "look"})

# Nouns naming the garment or the picture as a whole: "is a blue shirt" means "blue".
GARMENT_NOUNS = frozenset(
    {
        "shirt", "shirts", "tshirt", "t-shirt", "t-shirts", "tee", "tees", "top", "tops",
        "blouse", "dress", "dresses", "one", "item", "product", "garment", "piece", "thing",
        "version",
    }
)

COPULAS = frozenset(
    {
        "is", "are", "was", "were", "be", "been", "being", "am", "s", "looks", "look", "seems",
        "seem", "appears", "appear", "becomes", "become", "became", "gets", "get", "got",
        "feels", "feel",
    }
)

POSSESSION_VERBS = frozenset({"has", "have", "had", "having", "needs", "requires", "require",
                              "contains", "contain", "features", "feature", "includes",
                              "include", "shows", "show", "showing", "display", "displays",
                              "depicts", "depict", "wears", "wear"})

# Imperative verbs that introduce what the target should contain ("add X", "make it X").
REQUEST_VERBS = frozenset(
    {
        "add", "adds", "added", "make", "makes", "made", "put", "place", "places", "placed",
        "include", "insert", "use", "want", "wants", "wanted", "needs", "need", "prefer",
        "prefers", "preferred", "should", "would", "could", "can",
        "must", "will", "let", "keep", "try", "go", "give", "bring", "set", "zoom", "focus",
        "change", "changed", "changes", "turn", "turns", "turned", "switch", "swap",
        "replace", "replaced", "convert", "transform", "transformed",
    }
)

# Verbs whose object the target must NOT contain.
REMOVAL_VERBS = frozenset(
    {"remove", "removes", "removed", "delete", "deleted", "erase", "drop", "eliminate",
     "take", "lose", "get rid"}
)

NEGATIONS = frozenset({"no", "not", "without", "none", "never", "non", "nothing", "lacks",
                       "lacking", "isn't", "doesn't", "don't", "aren't"})

# Comparative intensifiers kept inside a phrase ("more formal", "less revealing").
DEGREE = frozenset({"more", "less", "fewer", "most", "least"})

PREPOSITIONS = frozenset(
    {
        "on", "in", "at", "by", "near", "under", "over", "above", "below", "behind", "beside",
        "next", "around", "across", "along", "against", "inside", "outside", "into", "onto",
        "between", "among", "from", "toward", "towards", "through", "throughout", "within",
        "upon", "beneath", "underneath", "of", "for", "to", "like", "about",
    }
)

COLOURS = frozenset(
    {
        "black", "white", "grey", "gray", "red", "blue", "green", "yellow", "orange", "purple",
        "pink", "brown", "beige", "tan", "navy", "teal", "turquoise", "maroon", "burgundy",
        "cream", "ivory", "gold", "golden", "silver", "violet", "lavender", "lilac", "magenta",
        "cyan", "olive", "khaki", "coral", "peach", "mint", "aqua", "charcoal", "nude",
        "multicolor", "multicolored", "multicoloured", "colorful", "colourful", "neon",
        "dark", "light", "bright", "pale", "pastel", "royal", "sky", "baby", "hot", "deep",
        "darker", "lighter", "brighter", "paler", "whiter", "blacker", "redder", "bluer",
        "greener", "rainbow",
        "blueish", "bluish", "greenish", "reddish", "yellowish", "pinkish", "greyish",
        "grayish", "brownish", "purplish", "orangish", "blackish", "whitish",
    }
)

# Hue names that never modify another hue ("navy blue" and "sky blue" do).
BASIC_HUES = frozenset({"black", "white", "red", "blue", "green", "yellow", "orange", "purple",
                        "pink", "brown", "gray", "grey"})

# Words for how light a colour is rather than which hue ("darker", "bright").
LIGHTNESS = frozenset({"dark", "light", "bright", "pale", "darker", "lighter", "brighter", "paler",
                       "darkest", "lightest", "brightest", "palest"})

# Words that make a preceding or following word about colour ("red in color").
COLOUR_NOUNS = frozenset({"color", "colour", "colors", "colours", "colored", "coloured",
                          "tone", "tones", "shade", "shades", "hue"})

# Words of no-change requests ("is identical", "looks like a perfect match", "exactly what you
# provided", "no difference"). A chunk asks for no change only when every content word is one
# and one of them is more than a request word ("i want it" in "i want it in blue" is not one).
SAME_CUES = frozenset({"same", "identical", "similar", "unchanged", "exact", "exactly",
                       "match", "matching", "alike", "perfect", "provided", "otherwise", "both",
                       "like", "what", "want", "wanted", "you", "i", "no", "difference",
                       "differences"})
SAME_REQUEST_WORDS = frozenset({"like", "what", "want", "wanted", "you", "i", "both",
                                "otherwise"})

# What "the same X" keeps ("same shoe but in brown", "same style in black"): no request.
SAME_OF = frozenset({"style", "kind", "type", "model", "cut", "shape", "shoe", "shoes", "pair"})

# Everyday words of fashion and scene edits; typo correction prefers these.
DOMAIN_WORDS = COLOURS | COLOUR_NOUNS | frozenset(
    {
        "sleeve", "sleeves", "sleeved", "sleeveless", "collar", "collared", "collarless",
        "button", "buttons", "buttoned", "pocket", "pockets", "stripe", "stripes", "striped",
        "pattern", "patterns", "patterned", "print", "prints", "printed", "graphic", "graphics",
        "logo", "logos", "letter", "letters", "lettering", "text", "words", "writing",
        "design", "designs", "floral", "flowers", "plaid", "checkered", "polka", "dots",
        "hood", "hooded", "hoodie", "zipper", "neck", "neckline", "v-neck", "crew", "scoop",
        "fitted", "loose", "tight", "baggy", "casual", "formal", "sporty", "shiny", "plain",
        "solid", "simple", "simpler", "fancy", "revealing", "cropped", "longer", "shorter", "multi",
        "wider", "narrower", "lighter", "darker", "brighter", "larger", "smaller", "bigger",
        "shirt", "t-shirt", "blouse", "dress", "skirt", "jacket", "sweater", "top", "tank",
        "polo", "vest", "denim", "cotton", "silk", "lace", "lacy", "leather", "wool", "fabric",
        "material", "length", "size", "style", "cartoon", "animal", "picture", "image",
        "background", "foreground", "table", "chair", "chairs", "floor", "wall", "window",
        "grass", "tree", "trees", "water", "sky", "sand", "snow", "road", "street", "room",
        "dog", "dogs", "puppy", "cat", "bird", "birds", "people", "person", "woman", "man",
        "child", "children", "bottle", "bottles", "glass", "plate", "bowl", "camera",
    }
)

# Common action verbs of scene descriptions (base forms); "-s"/"-ing" forms are derived.
ACTION_VERBS = frozenset(
    {
        "sit", "stand", "lie", "lay", "walk", "run", "play", "hold", "look", "eat", "drink",
        "sleep", "wear", "carry", "hang", "fly", "swim", "jump", "ride", "climb", "chase",
        "face", "point", "rest", "lean", "gather", "roam", "graze", "perch", "fill", "cover",
        "surround", "appear", "stare", "watch", "smile", "pose", "move", "cross", "drive",
        "float", "grow", "hug", "kiss", "lick", "bite", "chew", "catch", "throw", "push",
        "pull", "open", "close", "hide", "peek", "crawl", "fight", "bark", "sniff", "stretch",
        "yawn", "travel", "wait", "read", "write", "cook", "cut", "work", "dance", "sing",
        "talk", "feed", "splash", "dive", "stick", "turn", "touch", "reach",
        "enter", "leave", "cuddle", "snuggle", "huddle", "line", "display", "sail", "shine",
        "glow", "hunt", "nap", "relax", "lounge", "kneel", "squat", "crouch", "hover",
    }
)

# "-ing" words that are nouns, not verbs ("ceiling", "building").
ING_NOUNS = frozenset(
    {
        "ceiling", "building", "buildings", "clothing", "painting", "paintings", "ring", "rings",
        "thing", "things", "something", "nothing", "anything", "everything", "evening",
        "morning", "string", "strings", "wing", "wings", "king", "swing", "railing", "lighting",
        "bedding", "frosting", "icing", "topping", "toppings", "stuffing", "pudding",
        "wedding", "landing", "parking", "opening", "awning", "sibling", "duckling", "spring",
        "earring", "earrings", "lettering", "writing", "drawing", "drawings", "sing", "bring",
        "sling", "ping", "wording", "dumpling", "dumplings", "seating", "flooring",
        "siding", "trim", "printing", "pattering", "fitting", "ending", "heading", "setting",
        "lining", "coloring", "colouring", "shading", "padding", "piping", "ruching", "smocking",
        "bling", "ming", "viking", "filling", "housing", "serving", "servings", "cladding",
        "decking", "planking", "tubing", "listing", "marking", "markings", "embroidering",
        "stitching", "beading", "netting", "webbing", "outing", "feeling", "meaning", "meeting",
        "crossing", "bunting",
    }
)

# Modifiers that sit before a noun; an "-ing" word after them is an adjective ("white sleeping
# dogs"), so it does not start a new chunk.
PRENOMINAL = frozenset(
    {
        "big", "small", "large", "little", "tiny", "huge", "giant", "young", "old", "new", "two",
        "three", "four", "five", "six", "several", "many", "few", "one", "single", "other",
        "another", "more", "less", "fewer", "most", "very", "same", "different", "cute",
        "happy", "fluffy", "furry", "baby", "adult", "wild", "real", "wet", "dry",
    }
)

# Heads that cannot stand alone before a place phrase ("focus on", "shot from").
FILLER_HEADS = frozenset({"focus", "focused", "shot", "taken", "seen", "viewed", "zoom", "zoomed",
                          "close", "up", "more", "only", "just", "placed", "put", "set"})

# Parts of the item or picture: "logo on the front" is one attribute, not two.
PART_LOCATIONS = frozenset(
    {
        "front", "back", "chest", "sleeve", "sleeves", "collar", "neck", "neckline", "pocket",
        "pockets", "side", "sides", "center", "centre", "middle", "top", "bottom", "left",
        "right", "shoulder", "shoulders", "waist", "hem", "cuffs", "cuff", "body", "torso",
        "corner", "edge", "edges", "it", "them", "color", "colour", "size", "length", "style",
        "shape", "form",
    }
)

# Parts and prints of an item: "the sleeves are longer" is one attribute, "longer sleeves".
ITEM_PARTS = frozenset(
    {
        "sleeve", "sleeves", "collar", "neck", "neckline", "pocket", "pockets", "hem", "cuffs",
        "buttons", "trim", "hood", "straps", "strap", "heel", "heels", "sole", "soles", "toe",
        "laces", "lining", "graphic", "graphics", "logo", "logos", "design", "designs", "print",
        "pattern", "patterns", "stripes", "text", "writing", "lettering", "letters", "words",
        "font", "emblem", "decal", "zipper", "belt", "fabric", "material",
    }
)

# Words that only scale the next one ("slightly darker", "a bit longer").
INTENSIFIERS = frozenset({"slightly", "very", "much", "a", "bit", "little", "lot", "far", "way",
                          "somewhat", "even", "too", "so"})

# Size, shape and finish adjectives that stand as a part's quality ("the logo is big", "the
# sole is shiny").
PART_ADJECTIVES = frozenset({"big", "small", "large", "tiny", "huge", "long", "short", "wide",
                             "narrow", "thin", "thick", "high", "low", "tall", "deep", "shallow",
                             "bold", "plain", "bright", "dull", "shiny", "matte", "vertical",
                             "horizontal", "diagonal", "pointed", "pointy", "round", "rounded",
                             "square", "flat", "curved", "straight", "open", "closed"})

# Sizes and lengths of the whole item ("a large black tee", "a short red dress").
GARMENT_SIZES = frozenset({"big", "small", "large", "tiny", "huge", "long", "short", "mini",
                           "maxi", "midi", "tall", "oversized", "cropped"})

# Words ending in "-er" that are not comparatives.
NOT_COMPARATIVES = frozenset(
    {
        "sweater", "letter", "border", "collar", "flower", "poster", "number", "character",
        "leather", "sticker", "feather", "sneaker", "slipper", "zipper", "butter", "paper",
        "silver", "copper", "water", "finger", "monster", "tiger", "spider", "soccer", "player",
        "under", "over", "after", "other", "another", "power", "super", "cover", "corner",
        "center", "summer", "winter", "heather", "lavender", "amber", "burger", "trooper",
        "never", "ever", "rather", "either", "neither", "whether", "together", "however",
    }
)

# Garment names whose last word is a garment noun too ("tank top", "polo shirt").
GARMENT_COMPOUND_HEADS = frozenset({"tank", "crop", "polo", "tube", "halter", "dress", "tee",
                                    "muscle", "work", "rugby", "flannel", "henley", "camp"})

SLEEVE_LENGTHS = frozenset({"long", "short", "longer", "shorter", "no", "cap", "half", "full",
                            "three-quarter", "elbow", "rolled", "puffy", "puff", "loose"})

# Stand-alone style attributes that do not modify the next word ("plain black v neck").
STYLE_WORDS = frozenset(
    {
        "plain", "solid", "loose", "fitted", "casual", "formal", "striped", "plaid", "floral",
        "checkered", "sleeveless", "collared", "collarless", "slim", "baggy", "tight", "sporty",
        "simple", "simpler", "busy", "busier", "faded", "vintage", "retro", "cropped", "sheer",
        "shiny", "tighter", "looser",
    }
)

# Nouns naming the picture itself; alone they say nothing about the target.
PICTURE_NOUNS = frozenset({"image", "picture", "photo", "photograph", "shot", "pic", "scene",
                           "view", "frame", "target", "reference", "difference"})

# Regions of the picture: "in the background" alone only says where, not what.
PICTURE_REGIONS = frozenset({"background", "foreground", "distance", "backdrop"})

# First words of garment cuts and closures ("button down", "v neck", "tank top"): a colour
# before them is a separate attribute, while before a print or an object ("white bunny
# rabbit", "red floral pattern") it belongs to that noun.
CUT_WORDS = GARMENT_NOUNS | GARMENT_COMPOUND_HEADS | STYLE_WORDS | frozenset(
    {
        "button", "buttoned", "buttons", "zip", "zipper", "zippered", "v", "v-neck", "crew",
        "scoop", "round", "high", "turtle", "turtleneck", "mock", "boat", "hooded", "hoodie",
        "sweater", "sweatshirt", "jacket", "cardigan", "jersey", "vest", "camisole", "cami",
        "long", "short", "sleeve", "sleeves", "sleeved", "pullover", "oversized",
    }
)

# British spellings and their US forms: "grey" and "gray" in one text are one attribute.
US_SPELLING = {
    "grey": "gray", "greyish": "grayish", "colour": "color", "colours": "colors",
    "coloured": "colored", "colourful": "colorful", "multicoloured": "multicolored",
    "centre": "center", "centred": "centered", "favourite": "favorite", "jewellery": "jewelry",
    "pyjamas": "pajamas", "woollen": "woolen", "colourless": "colorless", "tyre": "tire",
    "tyres": "tires", "theatre": "theater", "aeroplane": "airplane", "aluminium": "aluminum",
}
