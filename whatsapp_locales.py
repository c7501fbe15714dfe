"""The words WhatsApp writes into an "Export chat" file, per app language.

An export is written in the phone's language: the media placeholders, the attachment lines and the
system rows (encryption notice, group events, deleted messages, missed calls) all change with it.
This module holds those strings for the languages listed in LANGUAGES, compiled into a few
regular expressions that whatsapp_txt_export uses:

    media_kind_of_placeholder("<Medien ausgeschlossen>") -> "media"
    media_kind_of_placeholder("imagen omitida")          -> "photo"
    is_system_text("Verpasster Sprachanruf")             -> True

Where the strings come from: WhatsApp's own app strings (Android strings.xml, iOS
Localizable.strings) as other open-source export parsers have collected them, and the issue
reports of real exports (German, Spanish, Japanese). Languages change their wording between app
versions, so several variants of one string are kept. Group events are matched by their fixed
words around the names (`{n}` a name, `{q}` a quoted group name or subject).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# Quote marks WhatsApp puts around group names and subjects, across languages.
_QUOTES = "\"'“”„‟«»‹›「」『』‘’‚"
_NAME = r"(?:(?!: ).){1,80}?"          # a display name or number; never spans "Name: "
_QUOTED = rf"[{_QUOTES}].{{0,200}}?[{_QUOTES}]"


@dataclass(frozen=True)
class Locale:
    """Everything one app language writes; tuples of exact strings, or regex templates for events."""

    media_omitted: tuple[str, ...] = ()            # Android, whole line: "<Media omitted>"
    omitted: dict[str, tuple[str, ...]] = field(default_factory=dict)  # iOS: kind -> "image omitted"
    attached: tuple[str, ...] = ()                 # iOS label in "<attached: 0001-PHOTO.jpg>"
    file_attached: tuple[str, ...] = ()            # Android label in "IMG-1.jpg (file attached)"
    deleted: tuple[str, ...] = ()                  # "This message was deleted"
    missed_calls: tuple[str, ...] = ()
    encrypted: tuple[str, ...] = ()                # regexes for the start of the encryption notice
    security_code: tuple[str, ...] = ()            # templates: "Your security code with {n} changed"
    events: tuple[str, ...] = ()                   # group events worded so that no chat line is like them
    short_events: tuple[str, ...] = ()             # "{n} left": dropped only under a system-like sender
    system_senders: tuple[str, ...] = ()           # the sender some exports put on system rows


LOCALES: dict[str, Locale] = {
    "en": Locale(
        media_omitted=("<Media omitted>",),
        omitted={"photo": ("image omitted",), "video": ("video omitted",), "audio": ("audio omitted",),
                 "sticker": ("sticker omitted",), "gif": ("GIF omitted",), "document": ("document omitted",),
                 "contact": ("Contact card omitted",)},
        attached=("attached",), file_attached=("file attached",),
        deleted=("This message was deleted", "You deleted this message", "This message was deleted by an admin",
                 "You deleted this message as admin", "Waiting for this message. This may take a while",
                 "Waiting for this message"),
        missed_calls=("Missed voice call", "Missed video call", "Missed group voice call", "Missed group video call",
                      "Silenced voice call", "Silenced video call"),
        encrypted=(r"(?:your )?messages (?:and calls|to this (?:group|chat)|you send)[^\n]*end-to-end encrypt",),
        security_code=("Your security code with {n} changed", "{n}'s security code changed"),
        events=("{n} created group {q}", "You created group {q}",
                "{n} changed the subject (?:from {q} )?to {q}", "{n} changed the group name (?:from {q} )?to {q}",
                "{n} changed this group's icon", "{n} deleted this group's icon", "{n} changed the group description",
                "{n} deleted the group description", "{n} joined using this group's invite link",
                "You joined using this group's invite link", "You were added", "{n} added you", "{n} removed you",
                "You're now an admin", "You're no longer an admin", "{n} changed their phone number.*",
                "{n} turned (?:on|off) disappearing messages.*", "{n} changed this group's settings.*",
                "{n} pinned a message", "{n} started a (?:video|voice) call",
                "{n} (?:updated|changed) the message timer.*", "{n} deleted this group"),
        short_events=("{n} added {n}", "{n} left", "{n} removed {n}", "{n} joined", "{n} changed to {n}",
                      "{n} (?:is|was) now an admin"),
        system_senders=("System", "WhatsApp"),
    ),
    "de": Locale(
        media_omitted=("<Medien ausgeschlossen>", "<Medien weggelassen>", "<Medien ausgelassen>"),
        omitted={"photo": ("Bild weggelassen",), "video": ("Video weggelassen",), "audio": ("Audio weggelassen",),
                 "sticker": ("Sticker weggelassen",), "gif": ("GIF weggelassen",),
                 "document": ("Dokument weggelassen",), "contact": ("Kontaktkarte ausgelassen",)},
        attached=("Anhang", "angehängt"), file_attached=("Datei angehängt",),
        deleted=("Diese Nachricht wurde gelöscht", "Du hast diese Nachricht gelöscht"),
        missed_calls=("Verpasster Sprachanruf", "Verpasster Videoanruf"),
        encrypted=(r"(?:deine )?nachrichten (?:und anrufe|an diese)[^\n]*ende-zu-ende-verschlüssel",),
        security_code=("Deine Sicherheitsnummer für {n} hat sich geändert",),
        events=("{n} hat die Gruppe {q} erstellt", "Du hast die Gruppe {q} erstellt",
                "{n} hat den Betreff (?:von {q} )?(?:zu|in) {q} geändert", "{n} hat den Gruppennamen .*geändert",
                "{n} hat das Gruppenbild geändert", "{n} hat das Gruppenbild gelöscht",
                "{n} hat die Gruppenbeschreibung geändert", "{n} ist über den Einladungslink.* beigetreten",
                "Du wurdest hinzugefügt", "{n} hat dich hinzugefügt", "{n} hat dich entfernt",
                "{n} hat die Gruppe verlassen", "{n} hat die Gruppeneinstellungen .*geändert.*",
                "{n} hat selbstlöschende Nachrichten .*"),
        short_events=("{n} hat {n} hinzugefügt", "{n} hat {n} entfernt", "{n} ist beigetreten",
                      "{n} hat zu {n} gewechselt"),
        system_senders=("System",),
    ),
    "es": Locale(
        media_omitted=("<Multimedia omitido>", "<Archivo omitido>"),
        omitted={"photo": ("imagen omitida",), "video": ("video omitido",), "audio": ("audio omitido",),
                 "sticker": ("sticker omitido",), "gif": ("GIF omitido",), "document": ("documento omitido",),
                 "contact": ("Tarjeta de contacto omitida",)},
        attached=("adjunto",), file_attached=("archivo adjunto", "archivo adjuntado"),
        deleted=("Se eliminó este mensaje", "Este mensaje fue eliminado", "Eliminaste este mensaje"),
        missed_calls=("Llamada perdida", "Llamada de voz perdida", "Videollamada perdida"),
        encrypted=(r"(?:los |tus )?mensajes[^\n]*cifrad\w* de extremo a extremo",),
        security_code=("Cambió tu código de seguridad con {n}", "Tu código de seguridad con {n} cambió"),
        events=("{n} creó el grupo {q}", "Creaste el grupo {q}", "{n} cambió el (?:asunto|nombre del grupo)"
                " (?:de {q} )?a {q}", "{n} cambió el (?:ícono|icono) de este grupo",
                "{n} cambió la descripción del grupo", "{n} se unió usando el enlace de invitación.*",
                "{n} cambió la (?:foto|imagen) del grupo", "Te añadieron", "{n} te añadió", "{n} te agregó",
                "{n} te eliminó", "{n} salió del grupo"),
        short_events=("{n} añadió a {n}", "{n} agregó a {n}", "{n} salió", "{n} eliminó a {n}", "{n} se unió", "{n} cambió a {n}"),
        system_senders=("Sistema",),
    ),
    "pt": Locale(
        media_omitted=("<Mídia oculta>", "<Mídia omitida>", "<Ficheiro não revelado>"),
        omitted={"photo": ("imagem ocultada", "imagem não revelada", "imagem omitida"),
                 "video": ("vídeo omitido", "vídeo não revelado", "vídeo ocultado"),
                 "audio": ("áudio ocultado", "ficheiro de áudio não revelado", "áudio omitido"),
                 "sticker": ("figurinha omitida", "sticker não revelado"), "gif": ("GIF não revelada", "GIF omitido"),
                 "document": ("documento omitido", "documento não revelado"),
                 "contact": ("Cartão do contato omitido", "Contacto não revelado")},
        attached=("anexado", "anexo"), file_attached=("arquivo anexado", "ficheiro anexado"),
        deleted=("Esta mensagem foi apagada", "Mensagem apagada", "Apagou esta mensagem", "Você apagou esta mensagem",
                 "Esta mensagem foi apagada pelo remetente"),
        missed_calls=("Chamada de voz perdida", "Videochamada perdida", "Chamada de vídeo perdida"),
        encrypted=(r"(?:as |suas )?(?:mensagens|chamadas)[^\n]*ponta[ -]a[ -]ponta",),
        security_code=("Seu código de segurança com {n} mudou", "O seu código de segurança partilhado com {n} mudou"),
        events=("{n} criou o grupo {q}", "Você criou o grupo {q}", "(?:Você|{n}) criou este grupo",
                "{n} (?:mudou|alterou) o (?:assunto|nome do grupo|nome)(?: de {q})? para {q}",
                "{n} (?:mudou|alterou) a imagem deste grupo", "{n} (?:mudou|alterou) a descrição do grupo",
                "{n} entrou usando o link de convite.*", "Você foi adicionad[oa]", "{n} adicionou você",
                "{n} removeu você"),
        short_events=("{n} adicionou {n}", "{n} saiu", "{n} removeu {n}", "{n} entrou", "{n} mudou para {n}"),
        system_senders=("Sistema",),
    ),
    "fr": Locale(
        media_omitted=("<Médias omis>", "<Fichier omis>"),
        omitted={"photo": ("image absente",), "video": ("vidéo absente",), "audio": ("audio omis",),
                 "sticker": ("sticker omis",), "gif": ("GIF retiré",), "document": ("document manquant",),
                 "contact": ("Fiche contact manquante",)},
        attached=("pièce jointe",), file_attached=("fichier joint",),
        deleted=("Ce message a été supprimé", "Vous avez supprimé ce message"),
        missed_calls=("Appel vocal manqué", "Appel vidéo manqué"),
        encrypted=(r"(?:les|vos) messages[^\n]*de bout en bout",),
        security_code=("Votre code de sécurité avec {n} a changé",),
        events=("{n} a créé le groupe {q}", "Vous avez créé le groupe {q}",
                "{n} a changé (?:le sujet|le nom du groupe)(?: de {q})? (?:à|en|pour) {q}",
                "{n} a modifié (?:le sujet|le nom du groupe)(?: de {q})? (?:à|en|pour) {q}",
                "{n} a (?:changé|modifié) l'icône de ce groupe", "{n} a modifié la description du groupe",
                "{n} a rejoint .*lien d'invitation.*", "Vous avez été ajouté(?:e)?", "{n} vous a ajouté(?:e)?",
                "{n} vous a retiré(?:e)?"),
        short_events=("{n} a ajouté {n}", "{n} est parti(?:e)?", "{n} a quitté(?: le groupe)?", "{n} a retiré {n}",
                      "{n} a rejoint"),
        system_senders=("Système",),
    ),
    "it": Locale(
        media_omitted=("<Media omessi>", "<Media omesso>"),
        omitted={"photo": ("immagine omessa",), "video": ("video omesso",), "audio": ("audio omesso",),
                 "sticker": ("sticker non incluso",), "gif": ("GIF esclusa",), "document": ("documento omesso",),
                 "contact": ("Scheda contatto omessa",)},
        attached=("allegato",), file_attached=("file allegato",),
        deleted=("Questo messaggio è stato eliminato", "Hai eliminato questo messaggio"),
        missed_calls=("Chiamata vocale persa", "Videochiamata persa"),
        encrypted=(r"i (?:tuoi )?messaggi[^\n]*crittograf\w* end-to-end",),
        security_code=("Il tuo codice di sicurezza con {n} è cambiato",),
        events=("{n} ha creato il gruppo {q}", "Hai creato il gruppo {q}",
                "{n} ha (?:cambiato|modificato) l'oggetto(?: da {q})? (?:a|in) {q}",
                "{n} ha (?:cambiato|modificato) l'immagine di questo gruppo",
                "{n} ha (?:cambiato|modificato) la descrizione del gruppo", "{n} si è unit[oa].*link d'invito.*",
                "Sei stat[oa] aggiunt[oa]", "{n} ti ha aggiunt[oa]", "{n} ti ha rimoss[oa]"),
        short_events=("{n} ha aggiunto {n}", "{n} è uscit[oa]", "{n} ha abbandonato", "{n} ha rimosso {n}",
                      "{n} si è unit[oa]"),
        system_senders=("Sistema",),
    ),
    "nl": Locale(
        media_omitted=("<Media weggelaten>",),
        omitted={"photo": ("afbeelding weggelaten",), "video": ("video weggelaten",), "audio": ("audio weggelaten",),
                 "sticker": ("sticker weggelaten",), "gif": ("GIF weggelaten",), "document": ("document weggelaten",),
                 "contact": ("Visitekaartje weggelaten",)},
        attached=("bijgevoegd",), file_attached=("bestand bijgevoegd",),
        deleted=("Dit bericht is verwijderd", "U hebt dit bericht verwijderd", "Je hebt dit bericht verwijderd",
                 "Wachten op dit bericht"),
        missed_calls=("Gemist spraakgesprek", "Gemiste spraakoproep", "Gemist videogesprek", "Gemiste video-oproep"),
        encrypted=(r"(?:berichten|uw oproepen|je berichten)[^\n]*end-to-end",),
        security_code=("(?:Uw|Je) beveiligingscode voor {n} is gewijzigd",),
        events=("{n} heeft (?:de )?groep {q} aangemaakt", "(?:Je|U) hebt (?:de )?groep {q} aangemaakt",
                "{n} heeft (?:het onderwerp|de groepsnaam) gewijzigd(?: van {q})? (?:naar|in) {q}",
                "{n} heeft het groepsonderwerp .*gewijzigd.*", "{n} heeft de groepsafbeelding gewijzigd",
                "{n} heeft de groepsbeschrijving gewijzigd", "{n} .*uitnodigingslink.*", "(?:Je|U) bent toegevoegd",
                "{n} heeft (?:je|u) toegevoegd", "{n} heeft (?:je|u) verwijderd", "{n} heeft de groep verlaten"),
        short_events=("{n} heeft {n} toegevoegd", "{n} is vertrokken", "{n} heeft {n} verwijderd",
                      "{n} neemt deel"),
        system_senders=("Systeem",),
    ),
    "ru": Locale(
        media_omitted=("<Без медиафайлов>", "<Файл пропущен>"),
        omitted={"photo": ("изображение отсутствует",), "video": ("видео отсутствует",),
                 "audio": ("аудиофайл отсутствует",), "sticker": ("стикер не добавлен",), "gif": ("GIF отсутствует",),
                 "document": ("документ отсутствует",), "contact": ("Карточка контакта отсутствует",)},
        attached=("прикреплено",), file_attached=("файл добавлен",),
        deleted=("Данное сообщение удалено", "Это сообщение удалено", "Вы удалили это сообщение",
                 "Вы удалили данное сообщение"),
        missed_calls=("Пропущенный аудиозвонок", "Пропущенный видеозвонок"),
        encrypted=(r"(?:ваши )?сообщения и звонки[^\n]*сквозным шифрованием",),
        security_code=("Ваш код безопасности с контактом {n} изменился",),
        events=(r"{n} создал\S* группу {q}", "Вы создали группу {q}", r"{n} изменил\S* тему(?: с {q})? на {q}",
                r"{n} изменил\S* (?:изображение|фото) (?:этой )?группы", r"{n} изменил\S* описание группы",
                r"{n} присоединил\S* .*ссылк.*", "Вас добавили", r"{n} добавил\S* вас", r"{n} удалил\S* вас",
                r"{n} покинул\S* группу"),
        short_events=(r"{n} добавил\S* {n}", r"{n} вышел(?:\(-?а\))?", r"{n} вышла", r"{n} удалил\S* {n}",
                      r"{n} присоединил\S*"),
        system_senders=("Система",),
    ),
    "tr": Locale(
        media_omitted=("<Medya dahil edilmedi>", "<Medya atlanmış>"),
        omitted={"photo": ("görüntü dahil edilmedi",), "video": ("video dahil edilmedi",), "audio": ("ses dahil edilmedi",),
                 "sticker": ("Çıkartma dahil edilmedi",), "gif": ("GIF dahil edilmedi",),
                 "document": ("belge dahil edilmedi",), "contact": ("Kişi kartı dahil edilmedi",)},
        attached=("eklendi",), file_attached=("dosya ekli",),
        deleted=("Bu mesaj silindi", "Bu mesajı sildiniz"),
        missed_calls=("Cevapsız sesli arama", "Cevapsız görüntülü arama"),
        encrypted=(r"mesaj\w*[^\n]*uçtan uca şifrel",),
        security_code=("{n} ile aranızdaki güvenlik kodu değişti",),
        # Wording of the group events as real Turkish exports show it.
        events=("{n},? {q} grubunu oluşturdu", "{q} grubunu oluşturdunuz", "{n},? .*grup adını .*olarak değiştirdi",
                "{n},? konuyu .*olarak değiştirdi", "{n},? (?:bu )?grubun simgesini değiştirdi",
                "{n},? (?:grup )?açıklamasını değiştirdi", "{n},? .*davet bağlantısıyla katıldı",
                "{n},? bu grubun ayarlarını .*", "{n},? sizi ekledi", "{n},? sizi çıkardı", "Artık yöneticisiniz",
                "{n},? bir mesajı sabitledi", "Bu mesaj bekleniyor.*"),
        short_events=("{n},? {n} kişisini ekledi", "{n},? {n} kişisini çıkardı", "{n} ayrıldı", "{n} gruba eklendi",
                      "{n} katıldı"),
        system_senders=("Sistem",),
    ),
    "id": Locale(
        media_omitted=("<Media tidak disertakan>",),
        omitted={"photo": ("gambar tidak disertakan",), "video": ("video tidak disertakan",),
                 "audio": ("audio tidak disertakan",), "sticker": ("stiker tidak disertakan",),
                 "gif": ("GIF tidak disertakan",), "document": ("dokumen tidak disertakan",),
                 "contact": ("Kartu kontak tidak disertakan",)},
        attached=("terlampir", "dilampir"), file_attached=("file terlampir",),
        deleted=("Pesan ini dihapus", "Pesan ini telah dihapus", "Anda menghapus pesan ini",
                 "Anda telah menghapus pesan ini"),
        missed_calls=("Panggilan suara tak terjawab", "Panggilan video tak terjawab"),
        encrypted=(r"pesan[^\n]*(?:terenkripsi|enkripsi) (?:secara )?end-to-end",),
        security_code=("Kode keamanan Anda dengan {n} telah berubah",),
        events=("{n} membuat grup {q}", "Anda membuat grup {q}",
                "{n} mengubah (?:subjek|nama grup)(?: dari {q})? menjadi {q}",
                "{n} mengubah (?:ikon|foto) grup ini", "{n} mengubah deskripsi grup",
                "{n} bergabung (?:menggunakan|dengan|melalui) tautan undangan.*", "Anda ditambahkan",
                "{n} menambahkan Anda", "{n} mengeluarkan Anda"),
        short_events=("{n} menambahkan {n}", "{n} keluar", "{n} mengeluarkan {n}", "{n} bergabung"),
        system_senders=("Sistem",),
    ),
    "ja": Locale(
        media_omitted=("<メディアなし>", "<メディアは含まれていません>"),
        omitted={"photo": ("画像は含まれていません",), "video": ("ビデオは含まれていません",),
                 "audio": ("音声は含まれていません",), "sticker": ("スタンプは含まれていません",),
                 "gif": ("GIFは含まれていません",), "document": ("ドキュメントは含まれていません",),
                 "contact": ("連絡先カードを省略",)},
        attached=("添付ファイル",), file_attached=("添付ファイル有り", "ファイル添付"),
        deleted=("このメッセージは削除されました", "このメッセージを削除しました"),
        missed_calls=("音声通話不在着信", "ビデオ通話不在着信", "不在着信"),
        encrypted=(r"メッセージと通話は[^\n]*エンドツーエンド",),
        security_code=("{n}とのセキュリティコードが変更されました",),
        events=("{n}がグループ{q}を作成しました", "グループ{q}を作成しました", "{n}が.*(?:件名|グループ名)を.*変更しました",
                "{n}がこのグループのアイコンを変更しました", "{n}がグループの説明を変更しました",
                "{n}が.*招待リンク.*参加しました", "{n}があなたを追加しました", "{n}があなたを削除しました"),
        short_events=("{n}が{n}を追加しました", "{n}が退出しました", "{n}が{n}を削除しました", "{n}が参加しました"),
        system_senders=("システム",),
    ),
    "zh": Locale(
        media_omitted=("<省略多媒体文件>", "<忽略多媒體檔>"),
        omitted={"photo": ("照片已忽略", "圖片已略去", "圖像已省略"), "video": ("视频已忽略", "影片已略去", "影片已省略"),
                 "audio": ("音频已忽略", "音訊已略去", "音訊已省略"), "sticker": ("贴图已省略", "貼圖已略去", "貼圖已忽略"),
                 "gif": ("GIF 动态图已被忽略", "GIF 已略去", "GIF 圖片已被省略"),
                 "document": ("文档已省略", "文件已略去", "文件已忽略"),
                 "contact": ("联系人卡片已忽略", "聯絡人卡片已略去", "聯絡人卡片已省略")},
        attached=("附件",), file_attached=("文件附件", "附件檔案"),
        deleted=("此訊息已刪除", "这条消息已被删除", "信息已删除", "您已刪除此訊息", "您已删除这条消息", "您删除这个信息"),
        missed_calls=("未接語音通話", "未接语音通话", "未接視像通話", "未接视频通话"),
        encrypted=(r"[^\n]{0,12}(?:端到端|端對端|端对端)[^\n]{0,4}加密",),
        security_code=("您和 ?{n} ?的安全代码已更改", "您與 ?{n} ?的安全碼已變更", "您與{n}之間的安全代碼已變更"),
        events=("{n} ?(?:创建了群组|创建了群|建立了群組|已建立群組) ?{q}",
                "{n} ?(?:将|把)(?:群组名称|群组主题|主题|群組名稱|主旨)(?:从|由|從).*(?:更改|改|變更)[为為].*",
                "{n} ?(?:更改|变更|變更)了(?:群组名称|群组主题|主题|群組名稱|主旨).*",
                "{n} ?(?:更改|变更|變更)了(?:此|该|這個)?群(?:组|組)(?:的)?(?:图标|頭像|圖示)", "{n} ?.*(?:邀请链接|邀請連結).*加入.*",
                "{n} ?(?:将您|把你|已將你)(?:添加|新增).*"),
        short_events=("{n} ?(?:添加了|已新增|加入了) ?{n}", "{n} ?(?:已退出|退出了群组|已離開|离开了|已离开)",
                      "{n} ?(?:移除了|已移除) ?{n}"),
        system_senders=("系统", "系統"),
    ),
    "ko": Locale(
        media_omitted=("<미디어 파일 제외됨>", "<미디어 파일을 생략한 대화내용>"),
        omitted={"photo": ("이미지 생략됨",), "video": ("비디오 생략됨",), "audio": ("오디오 생략됨",),
                 "sticker": ("스티커 제외됨",), "gif": ("GIF 생략됨",), "document": ("문서 생략됨",),
                 "contact": ("연락처 카드 생략됨",)},
        attached=("첨부됨",), file_attached=("파일 첨부됨",),
        deleted=("이 메시지는 삭제되었습니다", "삭제한 메시지입니다", "이 메시지를 삭제했습니다"),
        missed_calls=("부재중 전화", "부재중 영상통화"),
        encrypted=(r"메시지 및 전화는[^\n]*암호화",),
        security_code=("{n}님과의 보안 코드가 변경되었습니다",),
        events=("{n}님이 (?:그룹 )?{q}.*만들었습니다", "{n}님이 .*(?:제목|이름)을 .*(?:변경|바꿨)\\S*", "{n}님이 그룹 아이콘을 변경했습니다",
                "{n}님이 .*초대 링크.*참여했습니다", "{n}님이 회원님을 추가했습니다", "{n}님이 회원님을 내보냈습니다"),
        short_events=("{n}님이 {n}님을 추가했습니다", "{n}님이 나갔습니다", "{n}님이 {n}님을 내보냈습니다",
                      "{n}님이 참여했습니다"),
        system_senders=("시스템",),
    ),
    "ar": Locale(
        media_omitted=("<تم استبعاد الوسائط>",),
        omitted={"photo": ("لم يتم إدراج الصورة",), "video": ("لم يتم إدراج الفيديوهات", "لم يتم إدراج الفيديو"),
                 "audio": ("لم يتم إدراج المقاطع الصوتية",), "sticker": ("تم حذف الملصقات",),
                 "gif": ("لم يتم إدراج صورة GIF",), "document": ("لم يتم إدراج المستند",),
                 "contact": ("لم يتم إدراج بطاقة جهة اتصال",)},
        attached=("المُرفق", "المرفق"), file_attached=("الملف مرفق",),
        deleted=("تم حذف هذه الرسالة", "لقد حذَفت هذه الرسالة", "لقد حذفت هذه الرسالة", "أنت حذفت هذه الرسالة"),
        missed_calls=("مكالمة صوتية فائتة", "مكالمة فيديو فائتة"),
        encrypted=(r"(?:إن )?الرسائل[^\n]*(?:مشفرة|التشفير)",),
        security_code=("تغيّر رمز أمانك المُستخدَم مع {n}", "تغير رمز الأمان الخاص بك مع {n}"),
        events=("{n} أنشأ(?:ت)? (?:ال)?مجموعة.*", "أنشأت (?:ال)?مجموعة.*",
                "{n} (?:غيّر|غير|غيّرت|غيرت) (?:اسم المجموعة|الموضوع|صورة المجموعة|وصف المجموعة).*",
                "{n} انضم(?:ت)? .*رابط الدعوة.*", "{n} أضافك", "{n} أزالك"),
        short_events=("{n} أضاف(?:ت)? {n}", "{n} غادر(?:ت)?", "{n} أزال(?:ت)? {n}", "{n} انضم(?:ت)?"),
        system_senders=("النظام",),
    ),
    "hi": Locale(
        media_omitted=("<मीडिया के बिना>",),
        omitted={"photo": ("फ़ोटो हटाई गई",), "video": ("वीडियो छोड़ा गया",), "audio": ("ऑडियो हटाई गयी",),
                 "sticker": ("स्टिकर छोड़ा गया",), "gif": ("GIF छोड़ा गया",), "document": ("डॉक्यूमेंट छोड़ा गया",),
                 "contact": ("कॉन्टैक्ट कार्ड छोड़ा गया",)},
        attached=("अटैच किया गया",), file_attached=("फाइल अटैच कर दी गई है", "फाइल संलग्न"),
        deleted=("यह मैसेज डिलीट कर दिया गया है", "यह संदेश मिटाया गया", "आपने यह मैसेज डिलीट किया",
                 "आपने यह संदेश मिटाया"),
        missed_calls=("मिस्ड वॉइस कॉल", "वॉइस कॉल मिस हुई", "मिस्ड वीडियो कॉल", "छूटी हुई ध्वनि कॉल",
                      "छूटी हुई विडियो कॉल"),
        encrypted=(r"[^\n]*(?:एंड-टू-एंड एन्क्रिप्टेड|एन्क्रिप्शन से सुरक्षित)",),
        security_code=("{n} के लिए आपका सुरक्षा कोड बदल गया है",),
        events=("{n} ने (?:समूह|ग्रुप) {q} बनाया(?: है)?", "आपने (?:समूह|ग्रुप) {q} बनाया(?: है)?",
                "{n} ने (?:विषय|ग्रुप का नाम|समूह का नाम|ग्रुप का सब्जेक्ट).*बदल.*",
                "{n} ने इस (?:समूह|ग्रुप) का आइकन बदला.*",
                "{n} .*(?:आमंत्रण|इनवाइट) लिंक.*(?:जुड़े|जुड़ गए|शामिल).*", "{n} ने आपको जोड़ा", "{n} ने आपको हटाया"),
        short_events=("{n} ने {n} को जोड़ा", "{n} (?:ने )?(?:छोड़ दिया|बाहर निकल गए|चले गए|ग्रुप छोड़ दिया)",
                      "{n} ने {n} को हटाया"),
        system_senders=("सिस्टम",),
    ),
    "fi": Locale(
        media_omitted=("<Media jätetty pois>", "<Media jätettiin pois>"),
        omitted={"photo": ("ei kuvaa",), "video": ("videota ei sisällytetä",), "audio": ("äänitiedostoa ei sisällytetä",),
                 "sticker": ("tarraa ei sisällytetty",), "gif": ("GIF-animaatio jätetty pois",),
                 "document": ("dokumenttia ei sisällytetä",), "contact": ("Yhteystietokortti jätettiin pois",)},
        attached=("liite",), file_attached=("liitetiedosto",),
        deleted=("Tämä viesti poistettiin", "Poistit tämän viestin"),
        missed_calls=("Vastaamaton äänipuhelu", "Vastaamaton videopuhelu"),
        encrypted=(r"viestit ja puhelut salataan",),
        security_code=("Turvanumerosi muuttui henkilön {n} kanssa",),
        events=("{n} loi ryhmän {q}", "Loit ryhmän {q}", "{n} vaihtoi (?:aiheen|ryhmän nimen|aiheeksi).*",
                "{n} muutti (?:aiheen|ryhmän nimen|aiheeksi).*",
                "{n} (?:vaihtoi|muutti) (?:tämän )?ryhmän kuva\\w*", "{n} (?:vaihtoi|muutti) ryhmän kuvau\\w*",
                "{n} liittyi .*kutsulinki\\w*.*", "Sinut lisättiin", "{n} lisäsi sinut", "{n} poisti sinut"),
        short_events=("{n} lisäsi (?:henkilön )?{n}", "{n} poistui", "{n} poisti (?:henkilön )?{n}", "{n} liittyi"),
        system_senders=("Järjestelmä",),
    ),
    "sv": Locale(
        media_omitted=("<Media utelämnat>", "<Media har utelämnats>"),
        omitted={"photo": ("bild utesluten",), "video": ("video utesluten",), "audio": ("ljud uteslutet", "ljud utelslutet"),
                 "sticker": ("sticker utesluten",), "gif": ("GIF utesluten",), "document": ("dokument uteslutet",),
                 "contact": ("Kontaktkort uteslutet",)},
        attached=("bifogat",), file_attached=("bifogad fil",),
        deleted=("Det här meddelandet raderades", "Detta meddelande raderades", "Du raderade det här meddelandet",
                 "Du raderade detta meddelande", "Du har tagit bort meddelandet"),
        missed_calls=("Missat röstsamtal", "Missat samtal", "Missat videosamtal"),
        encrypted=(r"(?:dina )?meddelanden och samtal[^\n]*krypter",),
        security_code=("Din säkerhetskod med {n} har ändrats",),
        events=("{n} skapade gruppen {q}", "Du skapade gruppen {q}",
                "{n} ändrade (?:ämnet|gruppnamnet)(?: från {q})? till {q}",
                "{n} ändrade (?:den här )?gruppens (?:ikon|bild)", "{n} ändrade gruppbeskrivningen",
                "{n} gick med .*inbjudningslänk.*", "Du lades till", "{n} lade till dig", "{n} tog bort dig"),
        short_events=("{n} lade till {n}", "{n} lämnade", "{n} tog bort {n}", "{n} gick med"),
        system_senders=("System",),
    ),
    "pl": Locale(
        media_omitted=("<pominięto multimedia>", "<pliki pominięto>"),
        omitted={"photo": ("obraz pominięty",), "video": ("wideo pominięte",), "audio": ("audio pominięte",),
                 "sticker": ("pominięto naklejkę",), "gif": ("Plik GIF pominięty",), "document": ("dokument pominięty",),
                 "contact": ("Pominięta wizytówka kontaktu",)},
        attached=("załączono",), file_attached=("załączony plik",),
        deleted=("Ta wiadomość została usunięta", "Usunąłeś(-ęłaś) tę wiadomość", "Usunąłeś(aś) tę wiadomość",
                 "Usunięto tę wiadomość"),
        missed_calls=("Nieodebrane poł. głosowe", "Nieodebrane połączenie głosowe", "Nieodebrane połączenie",
                      "Nieodebrane poł. wideo", "Nieodebrane połączenie wideo"),
        encrypted=(r"(?:twoje )?wiadomości (?:i|oraz) połączenia[^\n]*szyfr",),
        security_code=("Twój kod zabezpieczeń z użytkownikiem {n} zmienił się",),
        events=(r"{n} utworzył\S* grupę {q}", r"Utworzył\S* grupę {q}",
                r"{n} zmienił\S* (?:temat|nazwę grupy)(?: z {q})? na {q}",
                r"{n} zmienił\S* (?:ikonę|zdjęcie) (?:tej )?grupy", r"{n} zmienił\S* opis grupy",
                r"{n} dołączył\S* .*link\S* z?aproszeni\S*.*", "Dodano Cię", r"{n} dodał\S* Cię", r"{n} usun\S* Cię"),
        short_events=(r"{n} dodał\S* {n}", r"{n} opuścił\S*(?: grupę)?", r"{n} usun\S* {n}", r"{n} dołączył\S*"),
        system_senders=("System",),
    ),
}

LANGUAGES = tuple(LOCALES)

# iOS writes these with a leading "<" and ">" in some versions ("<image omitted>").
_KINDS = ("photo", "video", "audio", "sticker", "gif", "document", "contact")


def _alternation(strings) -> str:
    """Longest first, so that "Missed voice call" wins over a shorter prefix of it."""
    return "|".join(re.escape(s) for s in sorted(set(strings), key=len, reverse=True))


def _template(template: str) -> str:
    return template.replace("{n}", _NAME).replace("{q}", _QUOTED)


def _collect(attribute: str) -> list:
    return [item for locale in LOCALES.values() for item in getattr(locale, attribute)]


_END = r"\s*[.。!]?\s*$"
_PLACEHOLDERS = {"media": _collect("media_omitted"),
                 **{kind: [p for locale in LOCALES.values() for p in locale.omitted.get(kind, ())] for kind in _KINDS}}
# One pattern, a named group per kind: "<Medien ausgeschlossen>" -> media, "imagen omitida" -> photo.
_PLACEHOLDER = re.compile(
    "^(?:" + "|".join(f"(?P<{kind}><?(?:{_alternation(strings)})>?)" for kind, strings in _PLACEHOLDERS.items())
    + f"){_END}", re.IGNORECASE)
_PLACEHOLDER_MAX = max(len(p) for strings in _PLACEHOLDERS.values() for p in strings) + 4
# iOS: "<attached: 00000012-PHOTO-2021-06-26-10-16-30.jpg>", any language's label before the colon.
ATTACHED_IOS = re.compile(
    rf"<(?:{_alternation(_collect('attached'))})\s?:\s(?P<file>[^<>\n]+)>", re.IGNORECASE)
# Android: "IMG-20210626-WA0001.jpg (file attached)"; the name may be cut to ".png" or lose its extension.
ATTACHED_ANDROID = re.compile(
    rf"^(?P<file>[^\n]*?)\s?\((?:{_alternation(_collect('file_attached'))})\)", re.IGNORECASE)
# Android's own media file names, recognised whatever the label after them says.
ANDROID_MEDIA_FILE = re.compile(r"^(?P<file>(?:IMG|VID|AUD|PTT|STK|DOC)-\d{8}-WA\d{4,}[^\s(]*)\s?\([^()\n]{2,40}\)",
                                re.IGNORECASE)
# iOS: "Lease.pdf • 3 pages document omitted"; endswith() on these first, as a search costs more.
DOCUMENT_OMITTED_ENDINGS = tuple(p.casefold() for p in _PLACEHOLDERS["document"])
DOCUMENT_OMITTED_TAIL = re.compile(rf"\s<?(?:{_alternation(_PLACEHOLDERS['document'])})>?{_END}", re.IGNORECASE)
_DELETED_OR_CALL = re.compile(
    rf"^(?:{_alternation(_collect('deleted') + _collect('missed_calls'))}|null){_END}", re.IGNORECASE)
_DELETED_OR_CALL_MAX = max(len(p) for p in _collect("deleted") + _collect("missed_calls")) + 4
_ENCRYPTED = re.compile("|".join(f"^(?:{p})" for p in _collect("encrypted")), re.IGNORECASE)
def _keyword(template: str) -> str:
    """The longest fixed run of words in a template (" created group "), to skip its regex cheaply."""
    pieces = re.split(r"\{[nq]\}|\([^)]*\)[?*+]?|\[[^\]]*\][?*+]?|\\[A-Za-z][?*+]?|[.^$|?*+,]", template)
    longest = max(pieces, key=len).strip()
    return longest.casefold() if len(longest) >= 2 and not set(longest) & set("\\()[]{}") else ""


def _gate_word(template: str) -> str | None:
    """First 4 letters of a word every matching text has at the start of a space-separated token:
    a word outside any group, after a space or at the very start ("crea" for "{n} created group")."""
    depth, escaped = 0, False
    for index, char in enumerate(template):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif depth == 0 and (index == 0 or template[index - 1] == " "):
            word = re.match(r"[^\W\d_]{4,}", template[index:])
            if word and not template[index + len(word[0]):].startswith(("?", "*")):
                return word[0][:4].casefold()
    return None


_LAST_LATIN = "\u02ff"


@dataclass(frozen=True)
class _Rules:
    """Templates compiled one regex each; a text only meets those whose gate word it holds, as one
    alternation of them all costs a millisecond per message (every branch scans names)."""

    by_gate: dict[str, tuple[re.Pattern, ...]]
    ungated: tuple[tuple[str, re.Pattern], ...]  # (keyword, pattern): CJK and the like, no spaces
    ungated_latin: tuple[tuple[str, re.Pattern], ...]

    def match(self, text: str, probe: tuple[str, set[str], bool] | None = None) -> bool:
        folded, prefixes, other_script = probe or _probe(text)
        for prefix in prefixes & self.by_gate.keys():
            if any(pattern.match(text) for pattern in self.by_gate[prefix]):
                return True
        # Templates in other scripts cannot match a text written only in Latin letters.
        candidates = self.ungated_latin + (self.ungated if other_script else ())
        return any((not key or key in folded) and pattern.match(text) for key, pattern in candidates)


def _probe(text: str) -> tuple[str, set[str], bool]:
    """What every rule set looks at: the folded text, its tokens' first 4 letters, a non-Latin letter."""
    folded = text.casefold()
    return folded, {token[:4] for token in folded.split()}, bool(folded) and max(folded) > _LAST_LATIN


def _rules(templates: list[str], anchored_end: bool = True) -> _Rules:
    by_gate: dict[str, list[re.Pattern]] = {}
    ungated = []
    for template in templates:
        pattern = re.compile(f"^(?:{_template(template)})" + (_END if anchored_end else ""), re.IGNORECASE)
        gate = _gate_word(template)
        if gate:
            by_gate.setdefault(gate, []).append(pattern)
        else:
            ungated.append((_keyword(template), pattern))
    latin = tuple((key, pattern) for key, pattern in ungated if key and max(key) <= _LAST_LATIN)
    return _Rules({gate: tuple(patterns) for gate, patterns in by_gate.items()},
                  tuple(rule for rule in ungated if rule not in latin), latin)


_EVENTS = _rules(_collect("events"))
_SECURITY_CODE = _rules(_collect("security_code"), anchored_end=False)
_SHORT_EVENTS = _rules(_collect("short_events"))
SYSTEM_SENDERS = frozenset(s.casefold() for s in _collect("system_senders"))
# "<This message was edited>" and its translations: any short <...> tail naming an edit.
EDITED_SUFFIX = re.compile(
    r"\s*<[^<>\n]{0,60}(?:edited|bearbeitet|edit[óo]|editad[oa]|modifi|bewerkt|изменено|отредактировано"
    r"|düzenlendi|diedit|編集|编辑|編輯|수정|تعديل|संपादित|muokattu|redigerat|edytowan)[^<>\n]{0,30}>\s*$",
    re.IGNORECASE)


def media_kind_of_placeholder(line: str) -> str | None:
    """The media kind a whole-line placeholder stands for ("media" when the export does not say);
    None for an ordinary line."""
    line = line.strip()
    placeholder = _PLACEHOLDER.match(line) if len(line) <= _PLACEHOLDER_MAX else None
    return placeholder.lastgroup if placeholder else None


def is_system_text(text: str, sender: str | None = None, chat_name: str | None = None) -> bool:
    """True for a row WhatsApp wrote itself (encryption notice, group event, deleted message, missed
    call) whatever sender the export put on it; the short events ("Anna left") only when `sender`
    is the chat itself or a "System"-like name, as such words could be somebody's message."""
    text = text.strip()
    if not text or "\n" in text.rstrip():
        return bool(text) and bool(_ENCRYPTED.match(text) or _SECURITY_CODE.match(text))
    probe = _probe(text)
    if (len(text) <= _DELETED_OR_CALL_MAX and _DELETED_OR_CALL.match(text)) or _ENCRYPTED.match(text) \
            or _SECURITY_CODE.match(text, probe) \
            or _EVENTS.match(text, probe):
        return True
    if sender is None:
        return False
    folded = sender.strip().casefold()
    from_system = folded in SYSTEM_SENDERS or (chat_name is not None and folded == chat_name.strip().casefold())
    return from_system and _SHORT_EVENTS.match(text, probe)


def is_system_line(rest: str) -> bool:
    """A whole header remainder (no author split yet) that is a system row with a ': ' inside it,
    such as `Maria changed the subject from "a: b" to "c"`."""
    rest = rest.strip()
    return bool(_ENCRYPTED.match(rest)) or _EVENTS.match(rest) or _SECURITY_CODE.match(rest)
