"""WhatsApp in-app exports from phones in other languages and layouts: one small export per header
layout and per app language, written here from the formats, with the messages a reader must get
back; a seeded round trip messages -> export text -> parser for every layout; and the real
exports in ../shared (skipped when absent)."""
from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import whatsapp_to_embeddings as wa
from whatsapp_export_builder import write_text
from whatsapp_locales import LANGUAGES
from whatsapp_txt_export import HEADER_LAYOUTS, parse_txt_export


def parsed(text: str, **kwargs) -> list[tuple]:
    return [(m.time, m.author, m.text) for m in parse_txt_export(text, **kwargs)]


# --- one export per header layout ---------------------------------------------------------------
# Each: a message, a two-line message, a system row, a message whose second line looks like a date.

T1, T2, T3 = datetime(2021, 6, 26, 22, 15), datetime(2021, 6, 27, 9, 5), datetime(2021, 6, 27, 9, 6)
EXPECTED = [(T1, "Maria", "hi"), (T2, "João", "first line\nsecond: line"), (T3, "Maria", "see\n2020-01-01 notes")]
EXPECTED_SECONDS = [(T1.replace(second=3), "Maria", "hi"), (T2.replace(second=4), "João", "first line\nsecond: line"),
                    (T3.replace(second=5), "Maria", "see\n2020-01-01 notes")]

LAYOUT_EXPORTS = {
    "Android day-first, 4-digit year": ("26/06/2021, 22:15 - Maria: hi\n27/06/2021, 09:05 - João: first line\n"
                                        "second: line\n27/06/2021, 09:05 - Maria added João\n"
                                        "27/06/2021, 09:06 - Maria: see\n2020-01-01 notes\n", EXPECTED),
    "Android day-first, 2-digit year": ("26/06/21, 22:15 - Maria: hi\n27/06/21, 09:05 - João: first line\nsecond: line\n"
                                        "27/06/21, 09:05 - João left\n27/06/21, 09:06 - Maria: see\n2020-01-01 notes\n",
                                        EXPECTED),
    "Android month-first, 12 h": ("6/26/21, 10:15 PM - Maria: hi\n6/27/21, 9:05 AM - João: first line\nsecond: line\n"
                                  "6/27/21, 9:05 AM - You were added\n6/27/21, 9:06 AM - Maria: see\n2020-01-01 notes\n",
                                  EXPECTED),
    "Android 12 h with a. m./p. m. (es, pt)": (
        "26/06/2021, 10:15\u00a0p.\u00a0m. - Maria: hi\n27/06/2021, 9:05\u00a0a.\u00a0m. - João: first line\n"
        "second: line\n27/06/2021, 9:05\u00a0a.\u00a0m. - Maria creó el grupo \"Viaje\"\n"
        "27/06/2021, 9:06\u00a0a.\u00a0m. - Maria: see\n2020-01-01 notes\n", EXPECTED),
    "Android dotted date (de, ru, tr, pl)": (
        "26.06.21, 22:15 - Maria: hi\n27.06.21, 09:05 - João: first line\nsecond: line\n"
        "27.06.21, 09:05 - Maria hat die Gruppe „Reise: 2021“ erstellt\n27.06.21, 09:06 - Maria: see\n"
        "2020-01-01 notes\n", EXPECTED),
    "Android dashed date, no comma (nl)": (
        "26-06-2021 22:15 - Maria: hi\n27-06-2021 09:05 - João: first line\nsecond: line\n"
        "27-06-2021 09:05 - Maria heeft João toegevoegd\n27-06-2021 09:06 - Maria: see\n2020-01-01 notes\n", EXPECTED),
    "Android year-first (sv, zh, ja)": (
        "2021-06-26 22:15 - Maria: hi\n2021-06-27 09:05 - João: first line\nsecond: line\n"
        "2021-06-27 09:05 - Maria lade till João\n2021-06-27 09:06 - Maria: see\n2020-01-01 notes\n", EXPECTED),
    "Android dot time (fi, id, da)": (
        "26/06/2021, 22.15 - Maria: hi\n27/06/2021, 09.05 - João: first line\nsecond: line\n"
        "27/06/2021, 09.05 - Maria menambahkan João\n27/06/2021, 09.06 - Maria: see\n2020-01-01 notes\n", EXPECTED),
    "Android Finnish 'klo' with seconds": (
        "26.6.2021 klo 22.15.03 - Maria: hi\n27.6.2021 klo 9.05.04 - João: first line\nsecond: line\n"
        "27.6.2021 klo 9.05.04 - Maria lisäsi henkilön João\n27.6.2021 klo 9.06.05 - Maria: see\n2020-01-01 notes\n",
        EXPECTED_SECONDS),
    "colon after the time": (
        "26.06.21 22.15.03: Maria: hi\n27.06.21 09.05.04: João: first line\nsecond: line\n"
        "27.06.21 09.05.04: Maria loi ryhmän ”Matka”\n27.06.21 09.06.05: Maria: see\n2020-01-01 notes\n",
        EXPECTED_SECONDS),
    "Android 12 h marker first (ko, zh)": (
        "2021. 6. 26. 오후 10:15 - Maria: hi\n2021. 6. 27. 오전 9:05 - João: first line\nsecond: line\n"
        "2021. 6. 27. 오전 9:05 - Maria님이 João님을 추가했습니다\n2021. 6. 27. 오전 9:06 - Maria: see\n"
        "2020-01-01 notes\n", EXPECTED),
    "Android Arabic digits and comma": (
        "٢٦\u200f/٦\u200f/٢٠٢١، ١٠:١٥ م - Maria: hi\n٢٧\u200f/٦\u200f/٢٠٢١، ٩:٠٥ ص - João: first line\nsecond: line\n"
        "٢٧\u200f/٦\u200f/٢٠٢١، ٩:٠٥ ص - Maria أضاف João\n٢٧\u200f/٦\u200f/٢٠٢١، ٩:٠٦ ص - Maria: see\n2020-01-01 notes\n",
        EXPECTED),
    "iOS bracketed, day-first": (
        "[26/06/2021, 22:15:03] Maria: hi\n[27/06/2021, 09:05:04] João: first line\nsecond: line\n"
        "[27/06/2021, 09:05:04] Trip: \u200eMaria added João\n[27/06/2021, 09:06:05] Maria: see\n2020-01-01 notes\n",
        EXPECTED_SECONDS),
    "iOS bracketed, month-first 12 h (U+202F, U+200E)": (
        "\u200e[6/26/21, 10:15:03\u202fPM] Maria: hi\n[6/27/21, 9:05:04\u202fAM] João: first line\nsecond: line\n"
        "\u200e[6/27/21, 9:05:04\u202fAM] Trip: \u200eMessages and calls are end-to-end encrypted.\n"
        "[6/27/21, 9:06:05\u202fAM] Maria: see\n2020-01-01 notes\n", EXPECTED_SECONDS),
    "iOS bracketed, dotted date and dot time": (
        "[26.06.21, 22.15.03] Maria: hi\n[27.06.21, 09.05.04] João: first line\nsecond: line\n"
        "[27.06.21, 09.05.04] Reise: \u200eMaria hat João hinzugefügt\n[27.06.21, 09.06.05] Maria: see\n"
        "2020-01-01 notes\n", EXPECTED_SECONDS),
    "iOS bracketed, year-first": (
        "[2021/06/26 22:15:03] Maria: hi\n[2021/06/27 09:05:04] João: first line\nsecond: line\n"
        "[2021/06/27 09:05:04] 旅行: \u200eMariaがJoãoを追加しました\n[2021/06/27 09:06:05] Maria: see\n"
        "2020-01-01 notes\n", EXPECTED_SECONDS),
}


def test_every_documented_layout_has_an_export_here():
    assert set(LAYOUT_EXPORTS) == {name for name, _ in HEADER_LAYOUTS}


@pytest.mark.parametrize("layout", list(LAYOUT_EXPORTS))
def test_layout_export_gives_its_messages(layout):
    text, expected = LAYOUT_EXPORTS[layout]
    problems = []
    assert parsed(text, on_problem=problems.append) == expected
    assert problems == []


@pytest.mark.parametrize("name, example", HEADER_LAYOUTS)
def test_documented_examples_parse(name, example):
    messages = parse_txt_export(example)
    assert [(m.author, m.text) for m in messages] in ([("Maria", "hi")], [("Mika", "hi")], [("Laura", "hi")]), name


def test_a_quoted_date_stays_in_its_message():
    text = ("26/06/2021, 10:15 - Maria: the minutes say\n"
            "12/03/2019, 09:00 - meeting moved\n"                 # same layout, earlier, no author
            "[12/03/2019, 09:00:00] Ann: hi\n"                   # another layout
            "26/06/2021, 10:16 - João: ok\n")
    assert parsed(text) == [
        (datetime(2021, 6, 26, 10, 15), "Maria",
         "the minutes say\n12/03/2019, 09:00 - meeting moved\n[12/03/2019, 09:00:00] Ann: hi"),
        (datetime(2021, 6, 26, 10, 16), "João", "ok"),
    ]


def test_unknown_layout_is_one_warning_naming_the_file_and_a_line(tmp_path):
    path = write_text(tmp_path / "WhatsApp Chat with Bo.txt", "Jun 26, 2021 at 10:15 - Bo: hi\nJun 26 - Bo: x\n")
    warnings = []
    assert list(wa.iter_documents(path, lambda t: len(t.split()), 200, warn=warnings.append)) == []
    assert len(warnings) == 1
    assert str(path) in warnings[0] and "'Jun 26, 2021 at 10:15 - Bo: hi'" in warnings[0]
    assert "README" in warnings[0]


# --- one export per app language ----------------------------------------------------------------
# The rows WhatsApp writes, as full sentences: media placeholder, attachment line, iOS placeholder,
# iOS attachment label, deleted message, missed call, encryption notice, group created, someone
# leaving, security code changed.

LANGUAGE_ROWS = {
    "en": ("<Media omitted>", "file attached", "image omitted", "attached", "This message was deleted",
           "Missed voice call", "Messages and calls are end-to-end encrypted. No one outside of this chat, not even "
           "WhatsApp, can read or listen to them. Tap to learn more.", "Maria created group “Trip”", "João left",
           "Your security code with João changed. Tap to learn more."),
    "de": ("<Medien ausgeschlossen>", "Datei angehängt", "Bild weggelassen", "Anhang", "Diese Nachricht wurde gelöscht",
           "Verpasster Sprachanruf", "Nachrichten und Anrufe sind Ende-zu-Ende-verschlüsselt. Niemand außerhalb dieses "
           "Chats kann sie lesen oder anhören, nicht einmal WhatsApp.", "Maria hat die Gruppe „Trip“ erstellt",
           "João hat die Gruppe verlassen", "Deine Sicherheitsnummer für João hat sich geändert. Tippe, um mehr zu erfahren."),
    "es": ("<Multimedia omitido>", "archivo adjunto", "imagen omitida", "adjunto", "Se eliminó este mensaje",
           "Llamada perdida", "Los mensajes y las llamadas están cifrados de extremo a extremo. Nadie fuera de este "
           "chat, ni siquiera WhatsApp, puede leerlos ni escucharlos.", "Maria creó el grupo \"Trip\"",
           "João salió del grupo", "Cambió tu código de seguridad con João. Toca para obtener más información."),
    "pt": ("<Mídia oculta>", "arquivo anexado", "imagem ocultada", "anexado", "Esta mensagem foi apagada",
           "Chamada de voz perdida", "As mensagens e as chamadas são protegidas com a criptografia de ponta a ponta e "
           "ficam somente entre você e os participantes desta conversa.", "Maria criou o grupo \"Trip\"", "João saiu",
           "Seu código de segurança com João mudou. Toque para saber mais."),
    "fr": ("<Médias omis>", "fichier joint", "image absente", "pièce jointe ", "Ce message a été supprimé",
           "Appel vocal manqué", "Les messages et les appels sont chiffrés de bout en bout. Aucun tiers, pas même "
           "WhatsApp, ne peut les lire ou les écouter.", "Maria a créé le groupe « Trip »", "João est parti",
           "Votre code de sécurité avec João a changé. Appuyez pour en savoir plus."),
    "it": ("<Media omessi>", "file allegato", "immagine omessa", "allegato", "Questo messaggio è stato eliminato",
           "Chiamata vocale persa", "I messaggi e le chiamate sono crittografati end-to-end. Nessuno al di fuori di "
           "questa chat, nemmeno WhatsApp, può leggerne o ascoltarne il contenuto.", "Maria ha creato il gruppo “Trip”",
           "João è uscito", "Il tuo codice di sicurezza con João è cambiato. Tocca per saperne di più."),
    "nl": ("<Media weggelaten>", "bestand bijgevoegd", "afbeelding weggelaten", "bijgevoegd", "Dit bericht is verwijderd",
           "Gemist spraakgesprek", "Berichten en gesprekken worden end-to-end versleuteld. Niemand buiten deze chat kan "
           "ze lezen of beluisteren, zelfs WhatsApp niet.", "Maria heeft groep 'Trip' aangemaakt",
           "João heeft de groep verlaten", "Je beveiligingscode voor João is gewijzigd. Tik voor meer informatie."),
    "ru": ("<Без медиафайлов>", "файл добавлен", "изображение отсутствует", "прикреплено", "Данное сообщение удалено",
           "Пропущенный аудиозвонок", "Сообщения и звонки защищены сквозным шифрованием. Третьи лица, включая WhatsApp, "
           "не могут прочитать ваши сообщения или прослушать звонки.", "Maria создал(а) группу «Trip»", "João вышел(-а)",
           "Ваш код безопасности с контактом João изменился. Нажмите, чтобы узнать подробнее."),
    "tr": ("<Medya dahil edilmedi>", "dosya ekli", "görüntü dahil edilmedi", "eklendi", "Bu mesaj silindi",
           "Cevapsız sesli arama", "Mesajlar ve aramalar uçtan uca şifrelidir. WhatsApp da dahil olmak üzere bu "
           "sohbetin dışında bulunan hiç kimse mesaj ve aramalarınızı okuyamaz ve dinleyemez.",
           "Maria, \"Trip\" grubunu oluşturdu", "João ayrıldı",
           "João ile aranızdaki güvenlik kodu değişti. Daha fazla bilgi edinmek için dokunun."),
    "id": ("<Media tidak disertakan>", "file terlampir", "gambar tidak disertakan", "terlampir", "Pesan ini telah dihapus",
           "Panggilan suara tak terjawab", "Pesan dan panggilan terenkripsi secara end-to-end. Tidak seorang pun di "
           "luar chat ini, termasuk WhatsApp, yang dapat membaca atau mendengarkannya.", "Maria membuat grup \"Trip\"",
           "João keluar", "Kode keamanan Anda dengan João telah berubah. Ketuk untuk info selengkapnya."),
    "ja": ("<メディアなし>", "ファイル添付", "画像は含まれていません", "添付ファイル", "このメッセージは削除されました",
           "音声通話不在着信", "メッセージと通話はエンドツーエンド暗号化されています。チャットの参加者以外は、たとえWhatsAppでも"
           "読んだり聞いたりすることはできません。", "Mariaがグループ「Trip」を作成しました", "Joãoが退出しました",
           "Joãoとのセキュリティコードが変更されました。タップして詳細を表示。"),
    "zh": ("<省略多媒体文件>", "文件附件", "照片已忽略", "附件", "此訊息已刪除", "未接语音通话",
           "消息和通话都进行端到端加密。对话之外的任何人，甚至包含 WhatsApp，都无法读取或收听。", "Maria创建了群组“Trip”",
           "João已退出", "您和 João 的安全代码已更改。点击了解更多。"),
    "ko": ("<미디어 파일 제외됨>", "파일 첨부됨", "이미지 생략됨", "첨부됨", "이 메시지는 삭제되었습니다", "부재중 전화",
           "메시지 및 전화는 종단간 암호화되어 안전합니다. 아무도 엿보거나 들을 수 없습니다. WhatsApp에게도 이러한 권한이 "
           "없습니다.", "Maria님이 그룹 'Trip'을(를) 만들었습니다", "João님이 나갔습니다",
           "João님과의 보안 코드가 변경되었습니다. 더 알아보려면 탭하세요."),
    "ar": ("<تم استبعاد الوسائط>", "الملف مرفق", "لم يتم إدراج الصورة", "المُرفق", "تم حذف هذه الرسالة",
           "مكالمة صوتية فائتة", "الرسائل والمكالمات مشفرة تمامًا بين الطرفين، بحيث لا يستطيع أحد خارج هذه الدردشة، ولا "
           "حتى شركة واتساب نفسها، قراءتها أو الاستماع إليها.", "Maria أنشأ المجموعة \"Trip\"", "João غادر",
           "تغيّر رمز أمانك المُستخدَم مع João. انقر هنا لمعرفة المزيد."),
    "hi": ("<मीडिया के बिना>", "फाइल अटैच कर दी गई है", "फ़ोटो हटाई गई", "अटैच किया गया", "यह मैसेज डिलीट कर दिया गया है",
           "मिस्ड वॉइस कॉल", "मैसेजेस और कॉल्स एंड-टू-एंड एन्क्रिप्टेड हैं. इस चैट में शामिल लोगों के अलावा कोई भी इन्हें पढ़ या "
           "सुन नहीं सकता, WhatsApp भी नहीं.", "Maria ने ग्रुप \"Trip\" बनाया", "João ने ग्रुप छोड़ दिया",
           "João के लिए आपका सुरक्षा कोड बदल गया है. ज़्यादा जानने के लिए टैप करें."),
    "fi": ("<Media jätetty pois>", "liitetiedosto", "ei kuvaa", "liite", "Tämä viesti poistettiin",
           "Vastaamaton äänipuhelu", "Viestit ja puhelut salataan täysin. Kukaan tämän keskustelun ulkopuolinen, ei "
           "edes WhatsApp, voi lukea tai kuunnella niitä.", "Maria loi ryhmän ”Trip”", "João poistui",
           "Turvanumerosi muuttui henkilön João kanssa. Napauta saadaksesi lisätietoja."),
    "sv": ("<Media utelämnat>", "bifogad fil", "bild utesluten", "bifogat", "Det här meddelandet raderades",
           "Missat röstsamtal", "Meddelanden och samtal är komplett krypterade. Ingen utanför denna chatt, inte ens "
           "WhatsApp, kan läsa dem eller lyssna på dem.", "Maria skapade gruppen ”Trip”", "João lämnade",
           "Din säkerhetskod med João har ändrats. Tryck för att läsa mer."),
    "pl": ("<pominięto multimedia>", "załączony plik", "obraz pominięty", "załączono", "Ta wiadomość została usunięta",
           "Nieodebrane połączenie głosowe", "Wiadomości i połączenia są w pełni zaszyfrowane. Nikt spoza czatu, nawet "
           "WhatsApp, nie może ich odczytać ani odsłuchać.", "Maria utworzył(a) grupę „Trip”", "João opuścił(a) grupę",
           "Twój kod zabezpieczeń z użytkownikiem João zmienił się. Stuknij, aby dowiedzieć się więcej."),
}

LANGUAGE_EXPECTED = [
    (datetime(2021, 6, 26, 10, 2), "Maria", "Hello"),
    (datetime(2021, 6, 26, 10, 3), "Maria", "[media] caption one"),
    (datetime(2021, 6, 26, 10, 4), "Maria", "[photo] caption two"),
    (datetime(2021, 6, 26, 10, 5), "Maria", "[photo]"),           # a cut file name keeps its kind
    (datetime(2021, 6, 26, 10, 10), "Maria", "[photo]"),
    (datetime(2021, 6, 26, 10, 11), "Maria", "[photo]"),
    (datetime(2021, 6, 26, 10, 12), "Maria", "[photo] view"),
]


def language_exports(lang: str) -> tuple[str, str]:
    media, file_attached, omitted, attached, deleted, call, encrypted, created, left, security = LANGUAGE_ROWS[lang]
    system = "Sistema" if lang in ("es", "pt", "it") else "System"
    android = (f"26/06/2021, 10:00 - Trip: {encrypted}\n"            # notice under the group's name
               f"26/06/2021, 10:01 - {system}: {created}\n"          # event under a "System" sender
               f"26/06/2021, 10:02 - Maria: Hello\n"
               f"26/06/2021, 10:03 - Maria: {media}\ncaption one\n"
               f"26/06/2021, 10:04 - Maria: IMG-20210626-WA0001.jpg ({file_attached})\ncaption two\n"
               f"26/06/2021, 10:05 - Maria: .png ({file_attached})\n"
               f"26/06/2021, 10:06 - João: {deleted}\n"
               f"26/06/2021, 10:07 - João: {call}\n"
               f"26/06/2021, 10:08 - Trip: {left}\n"
               f"26/06/2021, 10:09 - Maria: {security}\n")
    ios = (f"[26/06/2021, 10:10:00] Maria: \u200e{omitted}\n"
           f"[26/06/2021, 10:11:00] Maria: {omitted}\n"                # the mark lost on the way
           f"[26/06/2021, 10:12:00] Maria: view \u200e<{attached}: 00000012-PHOTO-2021-06-26-10-12-00.jpg>\n"
           f"[26/06/2021, 10:13:00] Trip: {encrypted}\n"
           f"[26/06/2021, 10:14:00] Maria: {created}\n"                  # the first participant as sender
           f"[26/06/2021, 10:15:00] Maria: \u200e{left}\n")
    return android, ios


def test_every_language_of_the_table_has_an_export_here():
    assert set(LANGUAGE_ROWS) == set(LANGUAGES)
    assert {"en", "pt", "es", "de", "fr", "it", "nl", "ru", "tr", "id", "ja", "zh", "ko", "ar", "hi", "fi", "sv",
            "pl"} <= set(LANGUAGES)


@pytest.mark.parametrize("lang", list(LANGUAGE_ROWS))
def test_language_export_keeps_messages_and_captions_only(lang):
    android, ios = language_exports(lang)
    got = parsed(android, chat_name="Trip") + parsed(ios, chat_name="Trip")
    assert got == LANGUAGE_EXPECTED


@pytest.mark.parametrize("lang", list(LANGUAGE_ROWS))
def test_language_rows_are_dropped_under_any_sender(lang):
    _, _, _, _, deleted, call, encrypted, created, _, security = LANGUAGE_ROWS[lang]
    for row in (deleted, call, encrypted, created, security):
        for sender in ("Maria", "Trip", "System", "Sistema"):
            assert parsed(f"26/06/2021, 10:00 - {sender}: {row}\n") == [], (sender, row)


def test_short_events_under_a_person_stay_messages():
    # "João left" written by Maria is her message; under the chat's name or "System" it is an event.
    text = "26/06/2021, 10:00 - Maria: João left\n26/06/2021, 10:01 - Trip: João left\n"
    assert parsed(text, chat_name="Trip") == [(datetime(2021, 6, 26, 10, 0), "Maria", "João left")]


def test_group_events_filed_under_the_group_in_other_wordings():
    # Turkish rows as real exports word them, and Latin American Spanish "agregó".
    rows = ["Ali, Veli kişisini ekledi", 'Ali, "Trip" grubunu oluşturdu', "Ali, grubun simgesini değiştirdi",
            "Ali, davet bağlantısıyla katıldı", "Ali gruba eklendi", "Maria agregó a João", "Maria te agregó"]
    text = "".join(f"26/06/2021, 10:0{i} - Trip: {row}\n" for i, row in enumerate(rows))
    assert parsed(text + "26/06/2021, 10:09 - Ali: merhaba\n", chat_name="Trip") == [
        (datetime(2021, 6, 26, 10, 9), "Ali", "merhaba")]


def test_subject_with_a_colon_is_a_system_row_in_any_language():
    for row in ('Maria changed the subject from "a: b" to "c"', "Maria hat den Betreff von „a: b“ zu „c“ geändert",
                "Maria vaihtoi aiheen ”a: b”", "Maria cambió el asunto de \"a: b\" a \"c\""):
        assert parsed(f"26/06/2021, 10:00 - {row}\n26/06/2021, 10:01 - Ann: hi\n") == [
            (datetime(2021, 6, 26, 10, 1), "Ann", "hi")], row


# --- round trip ---------------------------------------------------------------------------------

def _twelve(hour: int) -> int:
    return hour % 12 or 12


def _arabic(text: str) -> str:
    return text.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))


FORMATTERS = {
    "Android day-first, 4-digit year": lambda t: f"{t:%d/%m/%Y, %H:%M} - ",
    "Android day-first, 2-digit year": lambda t: f"{t:%d/%m/%y, %H:%M} - ",
    "Android month-first, 12 h": lambda t: f"{t.month}/{t.day}/{t:%y}, {_twelve(t.hour)}:{t:%M %p} - ",
    "Android 12 h with a. m./p. m. (es, pt)":
        lambda t: f"{t:%d/%m/%Y}, {_twelve(t.hour):02d}:{t:%M}\u00a0{'p' if t.hour >= 12 else 'a'}.\u00a0m. - ",
    "Android dotted date (de, ru, tr, pl)": lambda t: f"{t:%d.%m.%y, %H:%M} - ",
    "Android dashed date, no comma (nl)": lambda t: f"{t:%d-%m-%Y %H:%M} - ",
    "Android year-first (sv, zh, ja)": lambda t: f"{t:%Y-%m-%d %H:%M} - ",
    "Android dot time (fi, id, da)": lambda t: f"{t:%d/%m/%Y, %H.%M} - ",
    "Android Finnish 'klo' with seconds": lambda t: f"{t.day}.{t.month}.{t.year} klo {t.hour}.{t:%M.%S} - ",
    "colon after the time": lambda t: f"{t:%d.%m.%y %H.%M.%S}: ",
    "Android 12 h marker first (ko, zh)":
        lambda t: f"{t.year}. {t.month}. {t.day}. {'오후' if t.hour >= 12 else '오전'} {_twelve(t.hour)}:{t:%M} - ",
    "Android Arabic digits and comma":
        lambda t: _arabic(f"{t.day}\u200f/{t.month}\u200f/{t.year}، {_twelve(t.hour)}:{t:%M} ") +
        ("م" if t.hour >= 12 else "ص") + " - ",
    "iOS bracketed, day-first": lambda t: f"[{t:%d/%m/%Y, %H:%M:%S}] ",
    "iOS bracketed, month-first 12 h (U+202F, U+200E)":
        lambda t: f"\u200e[{t.month}/{t.day}/{t:%y}, {_twelve(t.hour)}:{t:%M:%S}\u202f{t:%p}] ",
    "iOS bracketed, dotted date and dot time": lambda t: f"[{t:%d.%m.%y, %H.%M.%S}] ",
    "iOS bracketed, year-first": lambda t: f"[{t:%Y/%m/%d %H:%M:%S}] ",
}
WITH_SECONDS = {name for name in FORMATTERS if name.startswith("iOS") or "seconds" in name or "colon" in name}
AUTHORS = ["Maria Silva", "João", "Анна", "山田 太郎", "+55 11 98765-4321", "Mika-Pekka", "O'Brien", "Zoë 🌻"]
WORDS = ["hi", "ok", "a: b", "10:15", "see", "https://example.org/x?y=1", "ça", "日本", "–", "(1)", "<3", "42",
         "[link]", "Montag", "20.06."]


def random_messages(rng: random.Random, count: int = 40) -> list[tuple[datetime, str, str]]:
    """Chronological messages from 2020 on; some span lines, some lines start with digits or a date."""
    when = datetime(2020, 1, 1) + timedelta(minutes=rng.randrange(60 * 24 * 30))
    messages = []
    for _ in range(count):
        when += timedelta(minutes=rng.randrange(1, 60 * 24 * 20), seconds=rng.randrange(60))
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6))) for _ in range(rng.choice([1, 1, 2, 3]))]
        if rng.random() < 0.2:
            lines.append(f"{rng.randrange(1, 28)}/{rng.randrange(1, 13)}/2019 was the day")  # a date, not a header
        messages.append((when, rng.choice(AUTHORS), "\n".join(lines)))
    return messages


@pytest.mark.parametrize("layout", list(FORMATTERS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_round_trip_messages_export_parse(layout, seed):
    messages = random_messages(random.Random(seed))
    header = FORMATTERS[layout]
    text = "\n".join(f"{header(t)}{author}: {body}" for t, author, body in messages) + "\n"
    keep_seconds = layout in WITH_SECONDS
    expected = [(t if keep_seconds else t.replace(second=0), author, body) for t, author, body in messages]
    problems = []
    assert parsed(text, on_problem=problems.append) == expected
    assert problems == []


def test_round_trip_covers_every_documented_layout():
    assert set(FORMATTERS) == {name for name, _ in HEADER_LAYOUTS}


# --- real exports nobody here wrote ---------------------------------------------------------------

def test_shared_exports_store_no_placeholder_or_system_row(shared_fixtures):
    files = sorted((shared_fixtures / "whatsapp-txt").rglob("*.txt"))
    assert files
    leftovers = ("omitted", "omitido", "ausgeschlossen", "ausgelassen", "weggelassen", "(file attached)",
                 "(archivo adjunto)", "(datei angehängt)", "<attached:", "end-to-end", "created group",
                 "were added", "was deleted", "missed voice call", "メディアなし", "ファイル添付")
    for file in files:
        problems = []
        messages = parse_txt_export(file.read_text(encoding="utf-8"), on_problem=problems.append,
                                    chat_name=Path(file).stem)
        assert messages, file.name
        assert problems == [], file.name
        for message in messages:
            assert not any(word in message.text.casefold() for word in leftovers), (file.name, message.text)
            assert message.text.count("[") == 0 or message.text.startswith("["), (file.name, message.text)
