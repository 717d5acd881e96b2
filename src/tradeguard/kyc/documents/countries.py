"""ICAO Doc 9303 Part 3 (section 5) three-letter codes of issuing states and nationalities,
mapped to ISO 3166-1 alpha-2.

An MRZ uses the ISO 3166-1 alpha-3 code of a state with ICAO's exceptions: Germany is the
single letter `D` (filled `D<<`), the British nationality classes are GBD/GBN/GBO/GBP/GBS,
Kosovo is RKS, and a few codes name organisations or a status rather than a state (the
United Nations, stateless persons, refugees). `UTO` is Utopia, the specimen state of Doc
9303's own worked examples: known (so the examples parse), but no country.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

_ISO_ALPHA3_TO_ALPHA2 = """
AFG AF ALA AX ALB AL DZA DZ ASM AS AND AD AGO AO AIA AI ATA AQ ATG AG ARG AR ARM AM ABW AW
AUS AU AUT AT AZE AZ BHS BS BHR BH BGD BD BRB BB BLR BY BEL BE BLZ BZ BEN BJ BMU BM BTN BT
BOL BO BES BQ BIH BA BWA BW BVT BV BRA BR IOT IO BRN BN BGR BG BFA BF BDI BI CPV CV KHM KH
CMR CM CAN CA CYM KY CAF CF TCD TD CHL CL CHN CN CXR CX CCK CC COL CO COM KM COG CG COD CD
COK CK CRI CR CIV CI HRV HR CUB CU CUW CW CYP CY CZE CZ DNK DK DJI DJ DMA DM DOM DO ECU EC
EGY EG SLV SV GNQ GQ ERI ER EST EE SWZ SZ ETH ET FLK FK FRO FO FJI FJ FIN FI FRA FR GUF GF
PYF PF ATF TF GAB GA GMB GM GEO GE DEU DE GHA GH GIB GI GRC GR GRL GL GRD GD GLP GP GUM GU
GTM GT GGY GG GIN GN GNB GW GUY GY HTI HT HMD HM VAT VA HND HN HKG HK HUN HU ISL IS IND IN
IDN ID IRN IR IRQ IQ IRL IE IMN IM ISR IL ITA IT JAM JM JPN JP JEY JE JOR JO KAZ KZ KEN KE
KIR KI PRK KP KOR KR KWT KW KGZ KG LAO LA LVA LV LBN LB LSO LS LBR LR LBY LY LIE LI LTU LT
LUX LU MAC MO MDG MG MWI MW MYS MY MDV MV MLI ML MLT MT MHL MH MTQ MQ MRT MR MUS MU MYT YT
MEX MX FSM FM MDA MD MCO MC MNG MN MNE ME MSR MS MAR MA MOZ MZ MMR MM NAM NA NRU NR NPL NP
NLD NL NCL NC NZL NZ NIC NI NER NE NGA NG NIU NU NFK NF MKD MK MNP MP NOR NO OMN OM PAK PK
PLW PW PSE PS PAN PA PNG PG PRY PY PER PE PHL PH PCN PN POL PL PRT PT PRI PR QAT QA REU RE
ROU RO RUS RU RWA RW BLM BL SHN SH KNA KN LCA LC MAF MF SPM PM VCT VC WSM WS SMR SM STP ST
SAU SA SEN SN SRB RS SYC SC SLE SL SGP SG SXM SX SVK SK SVN SI SLB SB SOM SO ZAF ZA SGS GS
SSD SS ESP ES LKA LK SDN SD SUR SR SJM SJ SWE SE CHE CH SYR SY TWN TW TJK TJ TZA TZ THA TH
TLS TL TGO TG TKL TK TON TO TTO TT TUN TN TUR TR TKM TM TCA TC TUV TV UGA UG UKR UA ARE AE
GBR GB USA US UMI UM URY UY UZB UZ VUT VU VEN VE VNM VN VGB VG VIR VI WLF WF ESH EH YEM YE
ZMB ZM ZWE ZW
"""


def _pairs(table: str) -> dict[str, str]:
    words = table.split()
    return dict(zip(words[::2], words[1::2], strict=True))


ISO_ALPHA3_TO_ALPHA2: dict[str, str] = _pairs(_ISO_ALPHA3_TO_ALPHA2)


class CodeKind(StrEnum):
    STATE = "state"
    # A nationality class of a state (the British ones): the state is known.
    NATIONALITY_CLASS = "nationality_class"
    # An organisation (UN, EU, Interpol) or a status (stateless, refugee): no country.
    SPECIAL = "special"
    SPECIMEN = "specimen"


@dataclass(frozen=True, slots=True)
class IcaoCode:
    code: str  # as printed, fillers removed ("D", "UTO", "GBR")
    kind: CodeKind
    alpha2: str | None  # ISO 3166-1 alpha-2, None when the code names no country


# Doc 9303 Part 3, 5.1 and 5.2: codes that are not ISO 3166-1 alpha-3.
_SPECIAL: dict[str, tuple[CodeKind, str | None]] = {
    "D": (CodeKind.STATE, "DE"),
    "GBD": (CodeKind.NATIONALITY_CLASS, "GB"),  # British Overseas Territories Citizen
    "GBN": (CodeKind.NATIONALITY_CLASS, "GB"),  # British National (Overseas)
    "GBO": (CodeKind.NATIONALITY_CLASS, "GB"),  # British Overseas Citizen
    "GBP": (CodeKind.NATIONALITY_CLASS, "GB"),  # British Protected Person
    "GBS": (CodeKind.NATIONALITY_CLASS, "GB"),  # British Subject
    "RKS": (CodeKind.STATE, "XK"),  # Kosovo (XK: the code in common use)
    "EUE": (CodeKind.SPECIAL, None),  # European Union
    "UNO": (CodeKind.SPECIAL, None),  # United Nations Organization or its official
    "UNA": (CodeKind.SPECIAL, None),  # a specialized agency of the United Nations
    "UNK": (CodeKind.SPECIAL, None),  # resident of Kosovo under UNMIK
    "XBA": (CodeKind.SPECIAL, None),  # African Development Bank
    "XIM": (CodeKind.SPECIAL, None),  # African Export-Import Bank
    "XCC": (CodeKind.SPECIAL, None),  # Caribbean Community
    "XCE": (CodeKind.SPECIAL, None),  # Council of Europe
    "XCO": (CodeKind.SPECIAL, None),  # Common Market for Eastern and Southern Africa
    "XEC": (CodeKind.SPECIAL, None),  # Economic Community of West African States
    "XES": (CodeKind.SPECIAL, None),  # Organisation of Eastern Caribbean States
    "XMP": (CodeKind.SPECIAL, None),  # Parliamentary Assembly of the Mediterranean
    "XOM": (CodeKind.SPECIAL, None),  # Sovereign Military Order of Malta
    "XDC": (CodeKind.SPECIAL, None),  # Southern African Development Community
    "XPO": (CodeKind.SPECIAL, None),  # Interpol
    "XXA": (CodeKind.SPECIAL, None),  # stateless person (1954 Convention)
    "XXB": (CodeKind.SPECIAL, None),  # refugee (1951 Convention)
    "XXC": (CodeKind.SPECIAL, None),  # refugee (other than XXB)
    "XXX": (CodeKind.SPECIAL, None),  # person of unspecified nationality
    "UTO": (CodeKind.SPECIMEN, None),  # Utopia, Doc 9303's specimen state
}


def icao_code(printed: str) -> IcaoCode | None:
    """The code printed in an MRZ field (`D<<`, `UTO`, `GBR`), or None when unknown."""
    code = printed.rstrip("<")
    special = _SPECIAL.get(code)
    if special is not None:
        return IcaoCode(code, special[0], special[1])
    alpha2 = ISO_ALPHA3_TO_ALPHA2.get(code)
    if alpha2 is None:
        return None
    return IcaoCode(code, CodeKind.STATE, alpha2)
