using System.Text;
using Poold.Auth;

namespace Poold.Tests.Auth;

public class SaslPrepTests
{
    [TestCase("pencil", "pencil", TestName = "Prepare_Ascii_IsUnchanged")]
    [TestCase("I\u00ADX", "IX", TestName = "Prepare_SoftHyphen_IsRemoved")]
    [TestCase("user", "user", TestName = "Prepare_PlainWord")]
    [TestCase("\u00AA", "a", TestName = "Prepare_FeminineOrdinal_NormalizesToA")]
    [TestCase("\u2168", "IX", TestName = "Prepare_RomanNumeralNine_NormalizesToIX")]
    [TestCase("a\u00A0b", "a b", TestName = "Prepare_NoBreakSpace_MapsToSpace")]
    [TestCase("\uFB01", "fi", TestName = "Prepare_Ligature_IsDecomposed")]
    [TestCase("p\u00E4ss", "p\u00E4ss", TestName = "Prepare_Umlaut_StaysComposed")]
    [TestCase("a\u0007b", "a\u0007b", TestName = "Prepare_ProhibitedControl_FallsBackToRawBytes")]
    public void Prepare_Rfc4013Examples(string input, string expected) =>
        Assert.That(Encoding.UTF8.GetString(SaslPrep.Prepare(input)), Is.EqualTo(expected));
}
