using Poold.Config;

namespace Poold.Tests.Config;

public class ConfLexerTests
{
    private static (List<ConfEntry> Entries, List<ConfigDiagnostic> Errors) Lex(string text)
    {
        var entries = new List<ConfEntry>();
        var diagnostics = new List<ConfigDiagnostic>();
        ConfLexer.Parse(text, "test.conf", entries, diagnostics);
        return (entries, diagnostics);
    }

    private static ConfEntry Single(string text)
    {
        var (entries, errors) = Lex(text);
        Assert.That(errors, Is.Empty, () => string.Join("\n", errors));
        Assert.That(entries, Has.Count.EqualTo(1));
        return entries[0];
    }

    [TestCase("port = 9999", "port", "9999", false, TestName = "Parse_NameEqualsInteger")]
    [TestCase("pcp_port 39898", "pcp_port", "39898", false, TestName = "Parse_EqualsSignIsOptional")]
    [TestCase("  port\t=\t9999  \r", "port", "9999", false, TestName = "Parse_TabsSpacesAndCarriageReturnAreBlanks")]
    [TestCase("listen_addresses = '*'", "listen_addresses", "*", true, TestName = "Parse_QuotedStringHasQuotesStripped")]
    [TestCase("listen_addresses = '127.0.0.1'", "listen_addresses", "127.0.0.1", true, TestName = "Parse_QuotedAddress")]
    [TestCase("x = 'it\\'s'", "x", "it\\'s", true, TestName = "Parse_BackslashQuoteIsKeptLiterally")]
    [TestCase("x = 'a # b' # comment", "x", "a # b", true, TestName = "Parse_HashInsideQuotesIsNotAComment")]
    [TestCase("x = ''", "x", "", true, TestName = "Parse_EmptyQuotedString")]
    [TestCase("mode = streaming_replication", "mode", "streaming_replication", false, TestName = "Parse_BareWord")]
    [TestCase("sr_check_user = pgpool # the user", "sr_check_user", "pgpool", false, TestName = "Parse_TrailingCommentIgnored")]
    [TestCase("host = db-1.example.com", "host", "db-1.example.com", false, TestName = "Parse_UnquotedStringWithDotsAndDashes")]
    [TestCase("dir = a/b:c", "dir", "a/b:c", false, TestName = "Parse_UnquotedStringWithSlashAndColon")]
    [TestCase("child_life_time = 5min", "child_life_time", "5min", false, TestName = "Parse_IntegerWithUnit")]
    [TestCase("x = 0x1F", "x", "0x1F", false, TestName = "Parse_HexInteger")]
    [TestCase("x = -1", "x", "-1", false, TestName = "Parse_NegativeInteger")]
    [TestCase("backend_weight0 = 0.5", "backend_weight0", "0.5", false, TestName = "Parse_Real")]
    [TestCase("x = 1.5e3", "x", "1.5e3", false, TestName = "Parse_RealWithExponent")]
    [TestCase("x = .5", "x", ".5", false, TestName = "Parse_RealWithoutLeadingDigit")]
    [TestCase("x = on", "x", "on", false, TestName = "Parse_BooleanWord")]
    [TestCase("x = 'ü'", "x", "ü", true, TestName = "Parse_NonAsciiInsideQuotes")]
    [TestCase("x = grüße", "x", "grüße", false, TestName = "Parse_NonAsciiLettersAreLetters")]
    public void Parse_ValidLine_GivesEntry(string line, string name, string value, bool quoted)
    {
        var entry = Single(line);
        Assert.Multiple(() =>
        {
            Assert.That(entry.Name, Is.EqualTo(name));
            Assert.That(entry.Value, Is.EqualTo(value));
            Assert.That(entry.Quoted, Is.EqualTo(quoted));
            Assert.That(entry.Line, Is.EqualTo(1));
            Assert.That(entry.File, Is.EqualTo("test.conf"));
        });
    }

    [TestCase("listen_addresses = 127.0.0.1", "\".0\"", TestName = "Parse_BareAddress_IsSyntaxErrorAsInPgpool")]
    [TestCase("x = 'it''s'", "\"'s'\"", TestName = "Parse_DoubledQuote_IsSyntaxError")]
    [TestCase("x = 'unterminated", "\"'\"", TestName = "Parse_UnterminatedString_IsSyntaxError")]
    [TestCase("x =", "end of line", TestName = "Parse_MissingValue_IsSyntaxError")]
    [TestCase("x", "end of line", TestName = "Parse_NameAlone_IsSyntaxError")]
    [TestCase("= 3", "\"=\"", TestName = "Parse_MissingName_IsSyntaxError")]
    [TestCase("9999 = port", "\"9999\"", TestName = "Parse_NumberAsName_IsSyntaxError")]
    [TestCase("x = /var/run", "\"/\"", TestName = "Parse_BarePath_IsSyntaxError")]
    [TestCase("x = *", "\"*\"", TestName = "Parse_BareStar_IsSyntaxError")]
    [TestCase("x = 1 2", "\"2\"", TestName = "Parse_TwoValues_IsSyntaxError")]
    [TestCase("x = ALLOW_TO_FAILOVER|ALWAYS_PRIMARY", "\"|\"", TestName = "Parse_BarePipe_IsSyntaxError")]
    [TestCase("x = = 1", "\"=\"", TestName = "Parse_TwoEqualsSigns_IsSyntaxError")]
    public void Parse_MalformedLine_ReportsFileLineAndToken(string line, string near)
    {
        var (entries, errors) = Lex("# first line\n" + line + "\nport = 1\n");
        Assert.That(errors, Has.Count.EqualTo(1));
        Assert.Multiple(() =>
        {
            Assert.That(errors[0].ToString(), Does.StartWith("test.conf:2: syntax error near " + near));
            Assert.That(errors[0].Severity, Is.EqualTo(DiagnosticSeverity.Error));
            Assert.That(entries.Select(e => e.Name), Is.EqualTo(new[] { "port" }), "the good line after the bad one is still read");
        });
    }

    [Test]
    public void Parse_EveryBadLine_IsReportedNotOnlyTheFirst()
    {
        var (_, errors) = Lex("a = 1.2.3\nb = ok\nc = 'x\nd =\n");
        Assert.That(errors.Select(e => e.Line), Is.EqualTo(new[] { 1, 3, 4 }));
    }

    [Test]
    public void Parse_BlankLinesCommentsAndCrLf_CountLinesCorrectly()
    {
        var (entries, errors) = Lex("\r\n# comment = 1\n\n   \t\nport = 1\r\nx = 'a'\n");
        Assert.That(errors, Is.Empty);
        Assert.That(entries.Select(e => (e.Name, e.Line)), Is.EqualTo(new[] { ("port", 5), ("x", 6) }));
    }

    [Test]
    public void Parse_LastLineWithoutNewline_IsRead()
    {
        var (entries, _) = Lex("a = 1\nb = 2");
        Assert.That(entries.Select(e => e.Value), Is.EqualTo(new[] { "1", "2" }));
    }

    [TestCase("health_check_password = hunter2 secret2", TestName = "SyntaxError_ExtraTokenInAPasswordValue_IsNotEchoed")]
    [TestCase("sr_check_password = 12.3.4secret2", TestName = "SyntaxError_BadNumberInAPasswordValue_IsNotEchoed")]
    [TestCase("wd_authkey = abc secret2", TestName = "SyntaxError_KeyValue_IsNotEchoed")]
    [TestCase("pool_passwd = a b secret2", TestName = "SyntaxError_PasswdValue_IsNotEchoed")]
    [TestCase("my_secret = x secret2", TestName = "SyntaxError_SecretValue_IsNotEchoed")]
    public void SyntaxError_InTheValueOfASecretParameter_SaysWhereButNotWhat(string line)
    {
        var (entries, errors) = Lex(line);
        Assert.That(entries, Is.Empty);
        Assert.That(errors, Has.Count.EqualTo(1));
        Assert.That(errors[0].Message, Does.Not.Contain("secret2").And.Contain("is not shown").And.Contain("column"));
    }

    [Test]
    public void SyntaxError_InAnOrdinaryValue_StillNamesTheToken()
    {
        var (_, errors) = Lex("sr_check_user = pgpool other");
        Assert.That(errors.Single().Message, Does.Contain("near \"other\""));
    }
}
