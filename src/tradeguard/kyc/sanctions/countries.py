"""Country names as OFAC writes them in the SDN list's remarks and addresses, mapped to
ISO 3166-1 alpha-2 codes (what a screening subject's nationality and country are)."""

from __future__ import annotations

_NAMES = """
AF Afghanistan|AL Albania|DZ Algeria|AD Andorra|AO Angola|AG Antigua and Barbuda|AR Argentina
AM Armenia|AW Aruba|AU Australia|AT Austria|AZ Azerbaijan|BS Bahamas, The|BS Bahamas
BH Bahrain|BD Bangladesh|BB Barbados|BY Belarus|BE Belgium|BZ Belize|BJ Benin|BT Bhutan
BO Bolivia|BA Bosnia and Herzegovina|BW Botswana|BR Brazil|BN Brunei|BG Bulgaria
BF Burkina Faso|MM Burma|BI Burundi|CV Cabo Verde|KH Cambodia|CM Cameroon|CA Canada
KY Cayman Islands|CF Central African Republic|TD Chad|CL Chile|CN China|CO Colombia|KM Comoros
CD Congo, Democratic Republic of the|CG Congo, Republic of the|CR Costa Rica|CI Cote d Ivoire
CI Cote d'Ivoire|HR Croatia|CU Cuba|CW Curacao|CY Cyprus|CZ Czech Republic|CZ Czechia
DK Denmark|DJ Djibouti|DM Dominica|DO Dominican Republic|EC Ecuador|EG Egypt|SV El Salvador
GQ Equatorial Guinea|ER Eritrea|EE Estonia|SZ Eswatini|ET Ethiopia|FJ Fiji|FI Finland
FR France|GA Gabon|GM The Gambia|GM Gambia, The|GE Georgia|DE Germany|GH Ghana|GI Gibraltar
GR Greece|GT Guatemala|GG Guernsey|GN Guinea|GW Guinea-Bissau|GY Guyana|HT Haiti|HN Honduras
HK Hong Kong|HU Hungary|IS Iceland|IN India|ID Indonesia|IR Iran|IQ Iraq|IE Ireland
IM Isle of Man|IL Israel|IT Italy|JM Jamaica|JP Japan|JE Jersey|JO Jordan|KZ Kazakhstan
KE Kenya|KP Korea, North|KR Korea, South|XK Kosovo|KW Kuwait|KG Kyrgyzstan|LA Laos|LV Latvia
LB Lebanon|LS Lesotho|LR Liberia|LY Libya|LI Liechtenstein|LT Lithuania|LU Luxembourg
MO Macau|MK Macedonia, The Former Yugoslav Republic of|MK North Macedonia|MG Madagascar
MW Malawi|MY Malaysia|MV Maldives|ML Mali|MT Malta|MH Marshall Islands|MR Mauritania
MU Mauritius|MX Mexico|MD Moldova|MC Monaco|MN Mongolia|ME Montenegro|MA Morocco
MZ Mozambique|NA Namibia|NP Nepal|NL Netherlands|CW Netherlands Antilles|NZ New Zealand
NI Nicaragua|NE Niger|NG Nigeria|NO Norway|OM Oman|PK Pakistan|PW Palau|PS Palestinian
PS West Bank|PS Region: Gaza|PA Panama|PG Papua New Guinea|PY Paraguay|PE Peru
PH Philippines|PL Poland|PT Portugal|QA Qatar|RO Romania|RU Russia|RW Rwanda
KN Saint Kitts and Nevis|LC Saint Lucia|VC Saint Vincent and the Grenadines|WS Samoa
SM San Marino|SA Saudi Arabia|SN Senegal|RS Serbia|SC Seychelles|SL Sierra Leone
SG Singapore|SK Slovakia|SI Slovenia|SO Somalia|ZA South Africa|SS South Sudan|ES Spain
LK Sri Lanka|SD Sudan|SR Suriname|SE Sweden|CH Switzerland|SY Syria|TW Taiwan|TJ Tajikistan
TZ Tanzania|TH Thailand|TL Timor-Leste|TG Togo|TT Trinidad and Tobago|TN Tunisia|TR Turkey
TM Turkmenistan|UG Uganda|UA Ukraine|AE United Arab Emirates|GB United Kingdom
US United States|UY Uruguay|UZ Uzbekistan|VU Vanuatu|VE Venezuela|VN Vietnam
VG Virgin Islands, British|YE Yemen|ZM Zambia|ZW Zimbabwe|UA Region: Crimea
"""

COUNTRY_CODES: dict[str, str] = {
    name.strip().casefold(): code
    for line in _NAMES.strip().splitlines()
    for code, name in (item.strip().split(" ", 1) for item in line.split("|"))
}


def country_code(name: str) -> str | None:
    """The alpha-2 code of a country as OFAC names it, None when it names none we know."""
    cleaned = " ".join(name.replace("possibly ", "").split()).strip(" .").casefold()
    return COUNTRY_CODES.get(cleaned)
