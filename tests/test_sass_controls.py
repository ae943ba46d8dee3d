"""The control bits read from an `nvdisasm -hex` listing (`cuteattn.sass.parse_controls`), on three instructions of
the sm90 backward's step: no GPU, no compiler."""

from cuteattn.sass import Control, parse_controls

LISTING = """
        /*19f0*/                   S2R R0, SR_TID.X ;                                  /* 0x0000000000007919 */
                                                                                       /* 0x000e620000002100 */
        /*1a80*/                   IMAD.SHL.U32 R3, R0, 0x8, RZ ;                      /* 0x0000000800037824 */
                                                                                       /* 0x002fca00078e00ff */
        /*1b30*/                   LDS.64 R216, [R6+UR4+0x30440] ;                     /* 0x0304400406d87984 */
                                                                                       /* 0x000ee80008000a00 */
"""


def test_parse_controls():
    controls = parse_controls(LISTING)
    assert controls == {
        0x19f0: Control(stall=1, write=1, read=None, waits=()),  # S2R sets scoreboard 1 when R0 is written
        0x1a80: Control(stall=5, write=None, read=None, waits=(1,)),  # its reader waits for it
        0x1b30: Control(stall=4, write=3, read=None, waits=()),
    }, controls
